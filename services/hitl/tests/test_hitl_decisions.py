"""Deciding reviews, by reviewers and by deadlines, on the real SQLite store."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pactmesh_contracts.envelope import Envelope, Principal
from pactmesh_contracts.events import ReviewDecided, ReviewDecision
from pactmesh_contracts.topics import REVIEWS_DECIDED
from pactmesh_hitl.adapters.sqlite_store import SqliteReviewStore, open_store
from pactmesh_hitl.domain.decisions import EXPIRY_REVIEWER, decide, expire_due
from pactmesh_hitl.domain.reviews import DecisionRequest, Review, ReviewError, ReviewState

NOW = datetime.now(UTC)
ORDER: dict[str, Any] = {
    "action_type": "purchase_order.v1",
    "vendor": "Acme Supplies",
    "items": [{"description": "laptops", "quantity": 12, "unit_price": 1000.0}],
    "amount": 12000.0,
    "currency": "USD",
}


class FakePublisher:
    """Collects events, after checking each one survives the wire; fails while ``broken``."""

    def __init__(self) -> None:
        self.events: list[Envelope[Any]] = []
        self.broken = False

    async def publish(self, event: Envelope[Any]) -> None:
        if self.broken:
            raise ConnectionError("kafka unreachable")
        self.events.append(REVIEWS_DECIDED.adapter.validate_json(event.model_dump_json()))

    @property
    def decisions(self) -> list[ReviewDecided]:
        return [e.payload for e in self.events]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteReviewStore]:
    async with open_store(tmp_path / "hitl.sqlite3") as opened:
        yield opened


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


async def _stored(
    store: SqliteReviewStore,
    *,
    action_type: str = "purchase_order.v1",
    proposed_action: dict[str, Any] = ORDER,
    expires_at: datetime = NOW + timedelta(hours=4),
) -> Review:
    review = Review(
        review_id=uuid.uuid4(),
        workflow_id=uuid.uuid4(),
        workflow="procurement",
        tenant="acme",
        rule="procurement.amount_over_threshold",
        summary="Purchase order above the approval threshold",
        action_type=action_type,
        proposed_action=proposed_action,
        required_role="procurement-manager",
        expires_at=expires_at,
        state=ReviewState.PENDING,
        requested_at=NOW - timedelta(minutes=5),
        # no principal: a stored one cannot be read back yet (see test_hitl_store)
        request_event_id=uuid.uuid4(),
    )
    assert await store.add(review)
    return review


def _request(decision: str = "approve", **changes: Any) -> DecisionRequest:
    fields: dict[str, Any] = {
        "decision": decision,
        "reviewer": "maria",
        "roles": ["requester", "procurement-manager"],
        **changes,
    }
    return DecisionRequest.model_validate(fields)


async def _decide(
    store: SqliteReviewStore, publisher: FakePublisher, review: Review, request: DecisionRequest
) -> Review:
    return await decide(
        store=store, publisher=publisher, review_id=review.review_id, request=request
    )


async def _state(store: SqliteReviewStore, review: Review) -> ReviewState:
    found = await store.get(review.review_id)
    assert found is not None
    return found.state


# -- reviewers ------------------------------------------------------------------------


async def test_approval_is_stored_and_published_as_the_requests_consequence(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)

    decided = await _decide(store, publisher, review, _request(comment="budgeted"))

    assert decided.state is ReviewState.DECIDED
    assert (decided.decision, decided.decided_by, decided.comment) == (
        "approve",
        "maria",
        "budgeted",
    )
    assert decided.decided_at is not None
    [event] = publisher.events
    assert event.payload == ReviewDecided(
        review_id=review.review_id,
        decision=ReviewDecision.APPROVE,
        reviewer="maria",
        comment="budgeted",
    )
    assert (event.workflow_id, event.tenant) == (review.workflow_id, "acme")
    assert event.causation_id == review.request_event_id
    assert event.principal == Principal(subject="unknown")  # the review carried none


async def test_reject_is_published(store: SqliteReviewStore, publisher: FakePublisher) -> None:
    review = await _stored(store)

    await _decide(store, publisher, review, _request("reject", comment="over budget"))

    assert [(d.decision, d.comment) for d in publisher.decisions] == [
        (ReviewDecision.REJECT, "over budget")
    ]


async def test_a_reviewer_without_the_required_role_is_forbidden(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)

    with pytest.raises(ReviewError, match="needs the role 'procurement-manager'") as caught:
        await _decide(store, publisher, review, _request(roles=["support-lead"]))

    assert caught.value.code == "forbidden"
    assert await _state(store, review) is ReviewState.PENDING
    assert publisher.events == []


async def test_an_unknown_review_is_not_found(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    with pytest.raises(ReviewError) as caught:
        await decide(store=store, publisher=publisher, review_id=uuid.uuid4(), request=_request())
    assert caught.value.code == "not_found"


@pytest.mark.parametrize(
    "settle",
    ["decided", "withdrawn"],
)
async def test_a_review_no_longer_pending_cannot_be_decided(
    store: SqliteReviewStore, publisher: FakePublisher, settle: str
) -> None:
    review = await _stored(store)
    if settle == "decided":
        await _decide(store, publisher, review, _request())
    else:
        await store.withdraw_for(review.workflow_id)
    published = len(publisher.events)

    with pytest.raises(ReviewError, match=f"is {settle}") as caught:
        await _decide(store, publisher, review, _request("reject", reviewer="bob"))

    assert caught.value.code == "not_pending"
    assert len(publisher.events) == published


async def test_a_valid_edit_is_published_as_the_contract_renders_it(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)
    edited = {
        "vendor": "Acme Supplies",
        "items": [{"description": "laptops", "quantity": 8, "unit_price": 1000}],
        "amount": 8000,
    }

    decided = await _decide(store, publisher, review, _request("edit", edited_action=edited))

    normalised = {
        **ORDER,
        "items": [{"description": "laptops", "quantity": 8, "unit_price": 1000.0}],
        "amount": 8000.0,
    }
    assert decided.edited_action == normalised
    [decision] = publisher.decisions
    assert (decision.decision, decision.edited_action) == (ReviewDecision.EDIT, normalised)


@pytest.mark.parametrize(
    ("edited", "errors"),
    [
        (
            {**ORDER, "amount": 11000.0},
            [(["body", "edited_action"], "value_error")],
        ),
        (
            {**ORDER, "approved": True},
            [(["body", "edited_action", "approved"], "extra_forbidden")],
        ),
        (
            {**ORDER, "items": [{"description": "", "quantity": 0, "unit_price": 1.0}]},
            [
                (["body", "edited_action", "items", 0, "description"], "string_too_short"),
                (["body", "edited_action", "items", 0, "quantity"], "greater_than"),
            ],
        ),
        (
            {k: v for k, v in ORDER.items() if k != "vendor"},
            [(["body", "edited_action", "vendor"], "missing")],
        ),
    ],
    ids=["amount-not-the-total", "unknown-field", "bad-line", "missing-vendor"],
)
async def test_an_invalid_edit_is_refused_with_its_field_errors(
    store: SqliteReviewStore,
    publisher: FakePublisher,
    edited: dict[str, Any],
    errors: list[tuple[list[Any], str]],
) -> None:
    review = await _stored(store)

    with pytest.raises(ReviewError, match=r"does not satisfy purchase_order\.v1") as caught:
        await _decide(store, publisher, review, _request("edit", edited_action=edited))

    assert caught.value.code == "invalid"
    assert [(e["loc"], e["type"]) for e in caught.value.errors] == errors
    assert all(e["msg"] for e in caught.value.errors)
    assert await _state(store, review) is ReviewState.PENDING
    assert publisher.events == []


async def test_an_edit_without_the_edited_action_is_refused(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)

    with pytest.raises(ReviewError) as caught:
        await _decide(store, publisher, review, _request("edit"))

    assert caught.value.code == "invalid"
    assert [e["loc"] for e in caught.value.errors] == [["body", "edited_action"]]
    assert publisher.events == []


async def test_an_edit_of_an_action_without_a_contract_is_refused(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store, action_type="wire_transfer.v1")

    with pytest.raises(ReviewError, match=r"no action contract 'wire_transfer\.v1'") as caught:
        await _decide(store, publisher, review, _request("edit", edited_action=ORDER))

    assert caught.value.code == "invalid"
    assert publisher.events == []


async def test_the_role_is_checked_before_the_edit(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    """A reviewer without the role learns nothing about what a valid edit would be."""
    review = await _stored(store)

    with pytest.raises(ReviewError) as caught:
        await _decide(
            store, publisher, review, _request("edit", edited_action={}, roles=["support-lead"])
        )

    assert caught.value.code == "forbidden"


async def test_a_failed_publish_reopens_the_review(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)
    publisher.broken = True

    with pytest.raises(ConnectionError):
        await _decide(store, publisher, review, _request("reject"))

    assert await store.get(review.review_id) == review
    publisher.broken = False
    decided = await _decide(store, publisher, review, _request())
    assert decided.decision == "approve"
    assert [d.decision for d in publisher.decisions] == [ReviewDecision.APPROVE]


class GetBarrier:
    """The real store, whose first ``parties`` reads return only once all of them have read."""

    def __init__(self, store: SqliteReviewStore, parties: int) -> None:
        self._store = store
        self._barrier = asyncio.Barrier(parties)
        self._waiting = parties

    async def get(self, review_id: uuid.UUID) -> Review | None:
        found = await self._store.get(review_id)
        if self._waiting:
            self._waiting -= 1
            await self._barrier.wait()
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_of_two_concurrent_decisions_exactly_one_wins(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)
    racing = GetBarrier(store, parties=2)  # both see the review pending

    async with asyncio.timeout(5):
        results = await asyncio.gather(
            decide(
                store=racing,
                publisher=publisher,
                review_id=review.review_id,
                request=_request("approve", reviewer="maria"),
            ),
            decide(
                store=racing,
                publisher=publisher,
                review_id=review.review_id,
                request=_request("reject", reviewer="bob"),
            ),
            return_exceptions=True,
        )

    [won] = [r for r in results if isinstance(r, Review)]
    [lost] = [r for r in results if isinstance(r, ReviewError)]
    assert lost.code == "not_pending"
    assert "decided by someone else" in str(lost)
    [decision] = publisher.decisions
    assert (decision.reviewer, decision.decision.value) == (won.decided_by, won.decision)
    assert await store.get(review.review_id) == won


async def test_concurrent_decisions_without_a_barrier_publish_once(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)

    results = await asyncio.gather(
        *(_decide(store, publisher, review, _request(reviewer=f"reviewer-{n}")) for n in range(5)),
        return_exceptions=True,
    )

    assert sum(isinstance(r, Review) for r in results) == 1
    assert all(isinstance(r, Review | ReviewError) for r in results)
    assert len(publisher.events) == 1


# -- deadlines ------------------------------------------------------------------------


async def test_expire_due_expires_only_overdue_reviews(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    overdue = await _stored(store, expires_at=NOW - timedelta(minutes=1))
    current = await _stored(store, expires_at=NOW + timedelta(minutes=1))

    assert await expire_due(store=store, publisher=publisher, now=NOW) == 1

    [event] = publisher.events
    assert event.payload == ReviewDecided(
        review_id=overdue.review_id,
        decision=ReviewDecision.EXPIRE,
        reviewer=EXPIRY_REVIEWER,
        comment="deadline passed",
    )
    assert EXPIRY_REVIEWER == "policy:expiry"
    assert (event.workflow_id, event.causation_id) == (
        overdue.workflow_id,
        overdue.request_event_id,
    )
    expired = await store.get(overdue.review_id)
    assert expired is not None
    assert (expired.state, expired.decision, expired.decided_by) == (
        ReviewState.EXPIRED,
        "expire",
        EXPIRY_REVIEWER,
    )
    assert await _state(store, current) is ReviewState.PENDING
    assert await expire_due(store=store, publisher=publisher, now=NOW) == 0
    assert len(publisher.events) == 1


async def test_an_expired_review_cannot_be_decided(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store, expires_at=NOW - timedelta(minutes=1))
    await expire_due(store=store, publisher=publisher, now=NOW)

    with pytest.raises(ReviewError, match="is expired") as caught:
        await _decide(store, publisher, review, _request())
    assert caught.value.code == "not_pending"


async def test_decided_and_withdrawn_reviews_never_expire(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    decided = await _stored(store, expires_at=NOW - timedelta(minutes=2))
    withdrawn = await _stored(store, expires_at=NOW - timedelta(minutes=1))
    await store.decide(  # decided just before its deadline, before the sweep ran
        decided.review_id,
        state=ReviewState.DECIDED,
        decision="approve",
        reviewer="bob",
        comment="",
        edited_action=None,
        at=NOW - timedelta(minutes=3),
    )
    await store.withdraw_for(withdrawn.workflow_id)

    assert await expire_due(store=store, publisher=publisher, now=NOW) == 0
    assert publisher.decisions == [], "nothing expired, so nothing was published"


class StaleDue:
    """The real store, whose ``due`` answers with a list taken earlier."""

    def __init__(self, store: SqliteReviewStore, due: list[Review]) -> None:
        self._store = store
        self._due = due

    async def due(self, now: datetime) -> list[Review]:
        return self._due

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_review_decided_after_the_sweep_listed_it_is_not_expired(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store, expires_at=NOW - timedelta(minutes=1))
    listed = await store.due(NOW)
    await store.decide(  # decided just before its deadline, before the sweep ran
        review.review_id,
        state=ReviewState.DECIDED,
        decision="approve",
        reviewer="bob",
        comment="",
        edited_action=None,
        at=NOW - timedelta(minutes=3),
    )

    expired = await expire_due(
        store=StaleDue(store, listed),
        publisher=publisher,
        now=NOW,
    )

    assert expired == 0
    assert publisher.decisions == [], "the sweep lost the race and published nothing"
    assert await _state(store, review) is ReviewState.DECIDED


async def test_a_failed_expiry_publish_reopens_the_review(
    store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store, expires_at=NOW - timedelta(minutes=1))
    publisher.broken = True

    with pytest.raises(ConnectionError):
        await expire_due(store=store, publisher=publisher, now=NOW)

    assert await store.get(review.review_id) == review
    publisher.broken = False
    assert await expire_due(store=store, publisher=publisher, now=NOW) == 1
