"""``/v1/reviews``: the reviewer API.

Who calls comes from the bearer token: the subject is the reviewer, the token's roles
are checked against the gate's role and the access policy, and the token's tenant is
the only tenant whose reviews the caller sees.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pactmesh_contracts.envelope import TenantId
from pactmesh_contracts.events import WorkflowName
from pactmesh_kit.auth.http import forbid
from pydantic import BaseModel

from pactmesh_hitl.api.deps import (
    REVIEW_ACTIONS,
    AuthenticatorDep,
    CurrentReader,
    ReviewDep,
    RuntimeDep,
    StoreDep,
    check_may_review,
)
from pactmesh_hitl.domain import decisions
from pactmesh_hitl.domain.cursor import decode_cursor, encode_cursor
from pactmesh_hitl.domain.reviews import (
    DecisionRequest,
    HistoryEntry,
    ListQuery,
    Review,
    ReviewPage,
    ReviewPriority,
    StateFilter,
)


class ErrorBody(BaseModel):
    """An error with a human-readable reason."""

    detail: str


class FieldError(BaseModel):
    """One refused field: where (``loc``), why (``msg``), and the error's kind."""

    loc: list[str | int]
    msg: str
    type: str


class FieldErrors(BaseModel):
    """A request refused field by field (FastAPI's validation errors, and refused edits)."""

    detail: list[FieldError]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


_AUTH: dict[int | str, dict[str, Any]] = {
    401: _error("No bearer token, or one that is expired, malformed or from another issuer."),
    403: _error("The token lacks the capability (or, for ?tenant=, names another tenant)."),
}
_REVIEW: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    404: _error("No such review in the caller's tenant."),
}
_ACT: dict[int | str, dict[str, Any]] = {
    **_REVIEW,
    403: _error(
        "The caller lacks the gate's role or the review action in the access policy, or"
        " requested the workflow themselves (separation of duties)."
    ),
    409: _error("Claimed by another reviewer, already decided, expired or withdrawn."),
}

router = APIRouter(prefix="/v1/reviews", tags=["reviews"])


@router.get(
    "",
    response_model=ReviewPage,
    responses={**_AUTH, 422: {"model": FieldErrors, "description": "A malformed query."}},
)
async def list_reviews(
    reader: CurrentReader,
    store: StoreDep,
    state: StateFilter = "pending",
    tenant: Annotated[TenantId | None, Query()] = None,
    workflow: Annotated[WorkflowName | None, Query()] = None,
    priority: Annotated[list[ReviewPriority] | None, Query()] = None,
    min_age_s: Annotated[float | None, Query(ge=0, le=10 * 365 * 86_400)] = None,
    max_age_s: Annotated[float | None, Query(ge=0, le=10 * 365 * 86_400)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ReviewPage:
    """The caller's tenant's reviews, oldest first, a page at a time.

    ``state`` is ``pending`` by default (claimed ones included, with ``claimed_by``);
    ``claimed`` selects pending reviews under a live claim. ``priority`` may repeat.
    ``min_age_s``/``max_age_s`` bound how long ago a review was requested. Pass the
    returned ``next_cursor`` as ``cursor`` for the next page.
    """
    if tenant is not None and tenant != reader.tenant:
        raise forbid(f"this token is for tenant {reader.tenant!r}, not {tenant!r}")
    now = datetime.now(UTC)
    after = decode_cursor(cursor) if cursor is not None else None
    query = ListQuery(
        tenant=reader.tenant,
        state=state,
        workflow=workflow,
        priorities=tuple(priority or ()),
        requested_before=now - timedelta(seconds=min_age_s) if min_age_s is not None else None,
        requested_after=now - timedelta(seconds=max_age_s) if max_age_s is not None else None,
        after=after,
        limit=limit + 1,
    )
    found = await store.find(query, now=now)
    items = found[:limit]
    more = len(found) > limit
    return ReviewPage(items=items, next_cursor=encode_cursor(items[-1]) if more else None)


@router.get("/{review_id}", response_model=Review, responses=_REVIEW)
async def get_review(review: ReviewDep) -> Review:
    """One review, with its claim and, once decided, its decision."""
    return review


@router.get("/{review_id}/timeline", responses=_REVIEW)
async def review_timeline(
    review: ReviewDep, runtime: RuntimeDep, request: Request
) -> dict[str, Any]:
    """What the agent did before the review: the request's timeline, from intake (with the
    caller's token; empty when intake has none for it)."""
    client = runtime.timelines
    found = None
    if client is not None:
        # The caller's own token: intake decides whether this reviewer may read it.
        authorization = request.headers.get("authorization", "")
        found = await client.timeline(review.workflow_id, authorization=authorization)
    return found or {"request_id": str(review.workflow_id), "tenant": review.tenant, "entries": []}


@router.get("/{review_id}/history", response_model=list[HistoryEntry], responses=_REVIEW)
async def review_history(review: ReviewDep, store: StoreDep) -> list[HistoryEntry]:
    """Everything that happened to the review, oldest first: requested, claimed, released,
    decided (who, when, what, why, which fields an edit changed), expired, escalated."""
    return await store.history(review.review_id)


@router.post("/{review_id}/claim", response_model=Review, responses=_ACT)
async def claim_review(
    review: ReviewDep,
    reader: CurrentReader,
    runtime: RuntimeDep,
    store: StoreDep,
    authenticator: AuthenticatorDep,
) -> Review:
    """Claim the review for the caller, so no other reviewer decides it while they work
    on it. The claim lapses after the configured TTL; claiming again extends it."""
    check_may_review(authenticator, reader, review, REVIEW_ACTIONS)
    ttl = timedelta(seconds=runtime.settings.claim_ttl_s)
    return await decisions.claim(store=store, review=review, reviewer=reader.subject, ttl=ttl)


@router.delete("/{review_id}/claim", response_model=Review, responses=_ACT)
async def release_review(
    review: ReviewDep, reader: CurrentReader, store: StoreDep, authenticator: AuthenticatorDep
) -> Review:
    """Give the review back to the queue; only the reviewer holding the claim may."""
    check_may_review(authenticator, reader, review, REVIEW_ACTIONS)
    return await decisions.release(store=store, review=review, reviewer=reader.subject)


@router.post(
    "/{review_id}/decision",
    response_model=Review,
    responses={
        **_ACT,
        422: {
            "model": FieldErrors,
            "description": "A malformed body, or an edit that does not satisfy the action's"
            " contract.",
        },
        400: _error("The body is not JSON."),
        503: _error("The review store is not available; nothing was decided."),
    },
)
async def post_decision(
    body: DecisionRequest,
    review: ReviewDep,
    reader: CurrentReader,
    runtime: RuntimeDep,
    store: StoreDep,
    authenticator: AuthenticatorDep,
) -> Review:
    """Approve, reject or edit the review (with a comment saying why); the workflow
    resumes (the decision and the event that resumes it are stored together, so the
    event is published even if the broker is down now). Decided exactly once, by the
    caller, as recorded in its history."""
    check_may_review(authenticator, reader, review, (body.decision,))
    return await decisions.decide(
        store=store,
        publisher=runtime.publisher,
        review=review,
        reviewer=reader.principal,
        request=body,
    )
