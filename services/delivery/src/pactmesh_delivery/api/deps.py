"""What the delivery service's routes are handed: the runtime, the webhook store, the
caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from pactmesh_kit.app import get_runtime
from pactmesh_kit.auth.http import CurrentPrincipal, require
from pactmesh_kit.auth.tokens import Identity

from pactmesh_delivery.domain.webhooks import WebhookStore
from pactmesh_delivery.runtime import Runtime

__all__ = ["CurrentIntegrator", "CurrentPrincipal", "RuntimeDep", "StoreDep"]

RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_store(runtime: RuntimeDep) -> WebhookStore:
    """The webhook store."""
    return runtime.require_webhooks()


StoreDep = Annotated[WebhookStore, Depends(get_store)]

CurrentIntegrator = Annotated[Identity, Depends(require("webhooks:manage"))]
"""The caller, who may manage its tenant's webhooks (403 otherwise)."""
