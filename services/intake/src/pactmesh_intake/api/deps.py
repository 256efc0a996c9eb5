"""What intake's routes are handed: the runtime, the request store, the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, status
from pactmesh_kit.app import get_runtime
from pactmesh_kit.auth import Identity
from pactmesh_kit.auth.http import CurrentPrincipal, require

from pactmesh_intake.adapters.rate_limits import TenantRateLimiter
from pactmesh_intake.domain.requests import RequestStore
from pactmesh_intake.runtime import Runtime

__all__ = ["CurrentPrincipal", "CurrentReader", "CurrentSubmitter", "RuntimeDep", "StoreDep"]

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_store(runtime: RuntimeDep) -> RequestStore:
    """The request store."""
    return runtime.require_store()


StoreDep = Annotated[RequestStore, Depends(get_store)]

# Built once: FastAPI caches a dependency per request by the callable's identity.
_may_submit = require("requests:submit")
_may_read = require("requests:read")


async def _within(limiter: TenantRateLimiter, identity: Identity) -> Identity:
    retry_after = await limiter.acquire(identity.tenant)
    if retry_after is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"tenant {identity.tenant!r} is over its {limiter.name} rate limit "
            f"({limiter.describe()}); retry in {retry_after} s",
            {"Retry-After": str(retry_after)},
        )
    return identity


async def submitter(
    identity: Annotated[Identity, Depends(_may_submit)], runtime: RuntimeDep
) -> Identity:
    """The caller, holding ``requests:submit`` and within its tenant's submit rate."""
    return await _within(runtime.submit_limiter, identity)


async def reader(
    identity: Annotated[Identity, Depends(_may_read)], runtime: RuntimeDep
) -> Identity:
    """The caller, holding ``requests:read`` and within its tenant's read rate."""
    return await _within(runtime.read_limiter, identity)


CurrentSubmitter = Annotated[Identity, Depends(submitter)]
CurrentReader = Annotated[Identity, Depends(reader)]
