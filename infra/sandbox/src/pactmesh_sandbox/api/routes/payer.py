"""The payer: coverage policies (retrieval) and prior-authorization intake (a side
effect)."""

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import JSONResponse

from pactmesh_sandbox.api.deps import CallerDep, IdempotencyKey, StoreDep, stored_response
from pactmesh_sandbox.payer import (
    MEMBERS,
    PolicySearchResult,
    PriorAuthorizationReceived,
    PriorAuthorizationRequest,
    received,
    search_policies,
)
from pactmesh_sandbox.store import Effect

router = APIRouter(prefix="/payer", tags=["payer"])


@router.get("/policies/search")
async def policies(
    procedure_code: Annotated[str, Query(pattern=r"^(\d{5}|[A-V]\d{4})$")],
    q: Annotated[str, Query(min_length=1, max_length=4_000)],
    diagnosis_codes: Annotated[list[str], Query(max_length=12)] = [],  # noqa: B006 - FastAPI reads it
    limit: Annotated[int, Query(ge=1, le=10)] = 3,
) -> PolicySearchResult:
    """The coverage policies for a procedure, ranked for the justification in ``q``."""
    found = search_policies(procedure_code=procedure_code, query=q, limit=limit)
    return PolicySearchResult(policies=found)


@router.post(
    "/prior-authorizations",
    status_code=status.HTTP_201_CREATED,
    response_model=PriorAuthorizationReceived,
    responses={
        404: {"description": "No such member"},
        409: {"description": "Idempotency-Key reused for another request"},
        422: {"description": "Not the payer's schema, or the member's coverage ended"},
    },
)
async def submit(
    request: PriorAuthorizationRequest, key: IdempotencyKey, store: StoreDep, caller: CallerDep
) -> JSONResponse:
    """Take a prior-authorization request in, once per idempotency key."""
    coverage = MEMBERS.get(request.member_id)
    if coverage is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"member {request.member_id} not found")
    if coverage != "active":
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"member {request.member_id}'s coverage is {coverage}",
        )

    def create() -> Effect:
        authorization_id = f"PA-{uuid.uuid4().hex[:12].upper()}"
        answer = received(request, authorization_id)
        return Effect(id=authorization_id, response=answer.model_dump(mode="json"))

    return stored_response(
        store.perform(
            kind="prior_authorization",
            key=key,
            tenant=caller.tenant,
            principal=caller.principal,
            endpoint="POST /payer/prior-authorizations",
            body=request.model_dump(mode="json"),
            effect=create,
        )
    )
