"""What routes are given: the store, the fault injector, the idempotency key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse

from pactmesh_sandbox.faults import FaultInjector
from pactmesh_sandbox.store import Store, Stored


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _faults(request: Request) -> FaultInjector:
    faults: FaultInjector = request.app.state.faults
    return faults


StoreDep = Annotated[Store, Depends(_store)]
FaultsDep = Annotated[FaultInjector, Depends(_faults)]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="Makes the side effect happen at most once: a repeat of the same "
        "request returns the first response; the same key with another body is a 409.",
    ),
]

TENANT_HEADER = "Pactmesh-Tenant"
PRINCIPAL_HEADER = "Pactmesh-Principal"


@dataclass(frozen=True)
class Caller:
    """Whom a request acts for, as the tools service says (from the tool call's envelope):
    data is the tenant's, side effects are recorded against both."""

    tenant: str
    principal: str


def _caller(
    tenant: Annotated[
        str,
        Header(
            alias=TENANT_HEADER,
            pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
            description="The tenant the call acts for: only its data is seen.",
        ),
    ],
    principal: Annotated[
        str,
        Header(
            alias=PRINCIPAL_HEADER,
            min_length=1,
            max_length=256,
            description="The principal (subject) the call acts for.",
        ),
    ],
) -> Caller:
    return Caller(tenant=tenant, principal=principal)


CallerDep = Annotated[Caller, Depends(_caller)]

REPLAYED_HEADER = "Idempotent-Replayed"


def stored_response(stored: Stored) -> JSONResponse:
    """The response a side effect's route sends, first time or replayed."""
    headers = {REPLAYED_HEADER: "true"} if stored.replayed else None
    return JSONResponse(stored.body, status_code=stored.status, headers=headers)
