"""``/v1/reviews``: the reviewer API."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse

from pactmesh_hitl.domain.decisions import decide
from pactmesh_hitl.domain.reviews import DecisionRequest, Review, ReviewError
from pactmesh_hitl.handlers import Runtime

router = APIRouter(prefix="/v1/reviews", tags=["reviews"])

_STATUS = {
    "not_found": status.HTTP_404_NOT_FOUND,
    "not_pending": status.HTTP_409_CONFLICT,
    "forbidden": status.HTTP_403_FORBIDDEN,
    "invalid": status.HTTP_422_UNPROCESSABLE_CONTENT,
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


@router.get("")
async def list_pending(
    request: Request,
    tenant: str | None = None,
    workflow: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[Review]:
    """Pending reviews, oldest first."""
    store = _runtime(request).require_store()
    return await store.pending(tenant=tenant, workflow=workflow, limit=limit, offset=offset)


@router.get("/{review_id}", responses={404: {"description": "No such review."}})
async def get_review(review_id: uuid.UUID, request: Request) -> Review:
    """One review, with its decision once decided."""
    review = await _runtime(request).require_store().get(review_id)
    if review is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no review {review_id}")
    return review


@router.post(
    "/{review_id}/decision",
    responses={
        403: {"description": "The reviewer lacks the role the gate names."},
        404: {"description": "No such review."},
        409: {"description": "Already decided, expired or withdrawn."},
        422: {"description": "The edit does not satisfy the action's contract."},
    },
)
async def post_decision(review_id: uuid.UUID, body: DecisionRequest, request: Request) -> Any:
    """Approve, reject or edit a pending review; the workflow resumes."""
    runtime = _runtime(request)
    try:
        return await decide(
            store=runtime.require_store(),
            publisher=runtime.publisher,
            review_id=review_id,
            request=body,
        )
    except ReviewError as exc:
        content: dict[str, Any] = {"detail": exc.errors or str(exc)}
        return JSONResponse(status_code=_STATUS[exc.code], content=content)
