"""Working on a review: claiming it, deciding it, and deadlines deciding it for nobody.

Who may do what (the gate's role, the policy's review actions, the tenant) is checked
at the edge before these functions run; these keep the review's state consistent when
several reviewers (on several instances) act at once, and keep duties separate: the
person a workflow acts for never claims or decides its reviews, whatever roles they
hold, unless the gate allows it. The decision event names the reviewer's principal
(``decided_by``), so that the orchestrator checks all of it again before resuming the
workflow.

A decision or an expiry and the event that resumes the workflow are written in one
transaction (the event into the store's outbox), then the event is published. If that
publish fails, or the process dies before it, the event stays in the outbox and the
relay of any instance publishes it, the same event: the review is never decided while
its workflow waits for good, and the orchestrator ignores a decision it already has.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import ReviewDecided, ReviewDecision
from pactmesh_workflows.registry import registry
from pydantic import ValidationError

from pactmesh_hitl.domain.errors import ReviewError
from pactmesh_hitl.domain.reviews import (
    DecisionRequest,
    Review,
    ReviewState,
    ReviewStore,
)

logger = logging.getLogger(__name__)

EXPIRY_REVIEWER = "policy:expiry"


class Publisher(Protocol):
    """Publishes one event durably."""

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish ``event``."""
        ...


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def _decision_event(review: Review, decided: ReviewDecided) -> Envelope[Any]:
    principal = review.principal or Principal(subject="unknown")
    return new_event(
        decided,
        workflow_id=review.workflow_id,
        tenant=review.tenant,
        principal=principal,
        causation_id=review.request_event_id,
    )


def check_not_own(review: Review, reviewer: str) -> None:
    """Refuse (``forbidden``) the requester working on a review of their own request."""
    requester = review.principal.subject if review.principal else None
    if review.separation_of_duties and requester == reviewer:
        raise ReviewError(
            "forbidden",
            f"{reviewer!r} requested this workflow and may not review it (separation of duties)",
        )


def conflict(review: Review, reviewer: str, now: datetime) -> str | None:
    """Why ``reviewer`` cannot act on ``review`` at ``now``; None if they can."""
    if review.state is not ReviewState.PENDING:
        return f"review {review.review_id} is {review.state.value}"
    if review.expires_at <= now:
        return f"review {review.review_id} expired at {review.expires_at.isoformat()}"
    holder = review.claim_holder(now)
    if holder is not None and holder != reviewer:
        until = review.claimed_until.isoformat() if review.claimed_until else "?"
        return f"review {review.review_id} is claimed by {holder} until {until}"
    return None


async def _explain(store: ReviewStore, review_id: uuid.UUID, reviewer: str, now: datetime) -> str:
    """The conflict a failed conditional write ran into, read back after the fact."""
    current = await store.get(review_id)
    if current is None:
        return f"review {review_id} is gone"
    return conflict(current, reviewer, now) or f"review {review_id} changed; try again"


async def _reloaded(store: ReviewStore, review_id: uuid.UUID) -> Review:
    review = await store.get(review_id)
    if review is None:
        raise ReviewError("not_found", f"no review {review_id}")
    return review


async def claim(
    *,
    store: ReviewStore,
    review: Review,
    reviewer: str,
    ttl: timedelta,
    now: datetime | None = None,
) -> Review:
    """Claim ``review`` for ``reviewer`` until ``now + ttl`` (extends their own claim).

    The store's conditional update decides between two reviewers claiming at once.
    """
    check_not_own(review, reviewer)
    at = _now(now)
    if reason := conflict(review, reviewer, at):
        raise ReviewError("conflict", reason)
    if not await store.claim(review.review_id, reviewer=reviewer, until=at + ttl, now=at):
        raise ReviewError("conflict", await _explain(store, review.review_id, reviewer, at))
    return await _reloaded(store, review.review_id)


async def release(
    *, store: ReviewStore, review: Review, reviewer: str, now: datetime | None = None
) -> Review:
    """Drop ``reviewer``'s claim; only the holder may."""
    at = _now(now)
    if not await store.release(review.review_id, reviewer=reviewer, now=at):
        current = await _reloaded(store, review.review_id)
        reason = conflict(current, reviewer, at)
        raise ReviewError("conflict", reason or f"{reviewer} holds no claim on {review.review_id}")
    return await _reloaded(store, review.review_id)


def _invalid_edit(message: str, loc: list[Any], kind: str = "value_error") -> ReviewError:
    return ReviewError(
        "invalid", message, [{"loc": ["body", "edited_action", *loc], "msg": message, "type": kind}]
    )


def _validated_edit(review: Review, request: DecisionRequest) -> dict[str, Any] | None:
    if request.decision != "edit":
        if request.edited_action is not None:
            raise _invalid_edit("only an edit carries edited_action", [], "extra_forbidden")
        return None
    if request.edited_action is None:
        raise _invalid_edit("required for edit", [], "missing")
    try:
        action = registry().validate_action(review.action_type, request.edited_action)
    except ValidationError as exc:
        errors = [
            {"loc": ["body", "edited_action", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False)
        ]
        raise ReviewError(
            "invalid", f"the edit does not satisfy {review.action_type}", errors
        ) from exc
    except LookupError as exc:
        raise _invalid_edit(str(exc), []) from exc
    return action.model_dump(mode="json")


def edited_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Top-level fields an edit changed: ``{field: {"from": old, "to": new}}``."""
    return {
        key: {"from": before.get(key), "to": after.get(key)}
        for key in sorted(before.keys() | after.keys())
        if before.get(key) != after.get(key)
    }


async def decide(
    *,
    store: ReviewStore,
    publisher: Publisher,
    review: Review,
    reviewer: Principal,
    request: DecisionRequest,
    now: datetime | None = None,
) -> Review:
    """Record ``reviewer``'s decision (their verified principal) and resume the workflow;
    exactly one decision wins.

    The store's conditional update is the arbiter: of two reviewers deciding at once,
    one update matches a pending review and the other finds it decided (or claimed).
    The decision event is written with the decision and published after it commits; a
    publish that fails is the outbox relay's to retry.
    """
    at, subject = _now(now), reviewer.subject
    check_not_own(review, subject)
    if reason := conflict(review, subject, at):
        raise ReviewError("conflict", reason)
    edited = _validated_edit(review, request)
    detail: dict[str, Any] = {"decision": request.decision, "comment": request.comment}
    if edited is not None:
        detail["edited_fields"] = edited_fields(review.proposed_action, edited)
    event = _decision_event(
        review,
        ReviewDecided(
            review_id=review.review_id,
            decision=ReviewDecision(request.decision),
            edited_action=edited,
            reviewer=subject,
            comment=request.comment,
            decided_by=reviewer,
        ),
    )
    if not await store.decide(
        review.review_id,
        reviewer=subject,
        decision=request.decision,
        comment=request.comment,
        edited_action=edited,
        detail=detail,
        event=event,
        now=at,
    ):
        raise ReviewError("conflict", await _explain(store, review.review_id, subject, at))
    await _publish(publisher, event)
    return await _reloaded(store, review.review_id)


async def _publish(publisher: Publisher, event: Envelope[Any]) -> None:
    """Publish an event already in the outbox; a failure leaves it to the relay."""
    try:
        await publisher.publish(event)
    except Exception as exc:
        logger.warning(
            "publishing the decision on review %s failed (%r); it stays in the outbox and"
            " is published again",
            event.payload.review_id,
            exc,
        )


async def expire_due(*, store: ReviewStore, publisher: Publisher, now: datetime) -> int:
    """Expire every pending review past its deadline; the workflow applies its policy
    (reject, or escalate to another role). Returns how many this call expired.

    Safe on every instance at once: each expiry is the store's conditional update of a
    pending review, so of two sweepers reaching one review, one expires it (and writes
    its event) and the other's update matches nothing and moves on.
    """
    expired = 0
    for review in await store.due(now):
        event = _decision_event(
            review,
            ReviewDecided(
                review_id=review.review_id,
                decision=ReviewDecision.EXPIRE,
                reviewer=EXPIRY_REVIEWER,
                comment="deadline passed",
            ),
        )
        if not await store.expire(
            review.review_id, actor=EXPIRY_REVIEWER, reason="deadline passed", event=event, now=now
        ):
            continue  # decided by a reviewer, or expired by another instance, meanwhile
        await _publish(publisher, event)
        expired += 1
    return expired
