"""Deciding a review, by a reviewer or by its deadline."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from pactmesh_contracts.actions import validate_action
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import ReviewDecided, ReviewDecision
from pydantic import ValidationError

from pactmesh_hitl.domain.reviews import (
    DecisionRequest,
    Review,
    ReviewError,
    ReviewState,
    ReviewStore,
)

EXPIRY_REVIEWER = "policy:expiry"


class Publisher(Protocol):
    """Publishes one event durably."""

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish ``event``."""
        ...


def _decision_event(review: Review, decided: ReviewDecided) -> Envelope[Any]:
    principal = review.principal or Principal(subject="unknown")
    return new_event(
        decided,
        workflow_id=review.workflow_id,
        tenant=review.tenant,
        principal=principal,
        causation_id=review.request_event_id,
    )


def _validated_edit(review: Review, request: DecisionRequest) -> dict[str, Any] | None:
    if request.decision != "edit":
        return None
    if request.edited_action is None:
        raise ReviewError(
            "invalid",
            "an edit needs edited_action",
            [{"loc": ["body", "edited_action"], "msg": "required for edit", "type": "missing"}],
        )
    try:
        action = validate_action(review.action_type, request.edited_action)
    except ValidationError as exc:
        errors = [
            {"loc": ["body", "edited_action", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False)
        ]
        raise ReviewError(
            "invalid", f"the edit does not satisfy {review.action_type}", errors
        ) from exc
    except LookupError as exc:
        raise ReviewError("invalid", str(exc)) from exc
    return action.model_dump(mode="json")


async def decide(
    *, store: ReviewStore, publisher: Publisher, review_id: uuid.UUID, request: DecisionRequest
) -> Review:
    """Record a reviewer's decision and resume the workflow; exactly one decision wins.

    The store's conditional update is the claim: of two reviewers deciding at once,
    one update matches a pending review and the other finds it decided. If the event
    cannot be published the decision is undone, so the review is never decided in the
    store while the workflow still waits.
    """
    review = await store.get(review_id)
    if review is None:
        raise ReviewError("not_found", f"no review {review_id}")
    if review.required_role not in request.roles:
        raise ReviewError(
            "forbidden", f"deciding this review needs the role {review.required_role!r}"
        )
    if review.state is not ReviewState.PENDING:
        raise ReviewError("not_pending", f"review {review_id} is {review.state.value}")
    at = datetime.now(UTC)
    if review.expires_at <= at:
        raise ReviewError(
            "not_pending", f"review {review_id} expired at {review.expires_at.isoformat()}"
        )
    edited = _validated_edit(review, request)
    if not await store.decide(
        review_id,
        state=ReviewState.DECIDED,
        decision=request.decision,
        reviewer=request.reviewer,
        comment=request.comment,
        edited_action=edited,
        at=at,
    ):
        raise ReviewError("not_pending", f"review {review_id} was decided by someone else")
    decided = ReviewDecided(
        review_id=review_id,
        decision=ReviewDecision(request.decision),
        edited_action=edited,
        reviewer=request.reviewer,
        comment=request.comment,
    )
    try:
        await publisher.publish(_decision_event(review, decided))
    except BaseException:
        await store.reopen(review_id)
        raise
    decided_review = await store.get(review_id)
    assert decided_review is not None
    return decided_review


async def expire_due(*, store: ReviewStore, publisher: Publisher, now: datetime) -> int:
    """Expire every pending review past its deadline; the workflow applies its policy
    (reject, or escalate to another role). Returns how many expired."""
    expired = 0
    for review in await store.due(now):
        if not await store.decide(
            review.review_id,
            state=ReviewState.EXPIRED,
            decision="expire",
            reviewer=EXPIRY_REVIEWER,
            comment="deadline passed",
            edited_action=None,
            at=now,
        ):
            continue  # decided by a reviewer in the meantime
        decided = ReviewDecided(
            review_id=review.review_id,
            decision=ReviewDecision.EXPIRE,
            reviewer=EXPIRY_REVIEWER,
            comment="deadline passed",
        )
        try:
            await publisher.publish(_decision_event(review, decided))
        except BaseException:
            await store.reopen(review.review_id)
            raise
        expired += 1
    return expired
