"""The SQLite review store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import aiosqlite
import pytest
from pactmesh_contracts.envelope import Principal
from pactmesh_hitl.adapters.sqlite_store import SCHEMA_VERSION, SqliteReviewStore, open_store
from pactmesh_hitl.domain.reviews import Review, ReviewState

T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
ORDER = {
    "action_type": "purchase_order.v1",
    "vendor": "Acme Supplies",
    "items": [{"description": "laptops", "quantity": 30, "unit_price": 1000.0}],
    "amount": 30_000.0,
    "currency": "USD",
}


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteReviewStore]:
    async with open_store(tmp_path / "hitl.sqlite3") as opened:
        yield opened


def _review(
    *,
    minute: int,
    tenant: str = "acme",
    workflow_id: uuid.UUID | None = None,
    workflow: str = "procurement",
    expires_in: timedelta = timedelta(days=1),
) -> Review:
    return Review(
        review_id=uuid.uuid4(),
        workflow_id=workflow_id or uuid.uuid4(),
        workflow=workflow,
        tenant=tenant,
        rule="procurement.amount_over_threshold",
        summary=f"review at {minute}",
        action_type="purchase_order.v1",
        proposed_action=ORDER,
        required_role="procurement-manager",
        expires_at=T0 + expires_in,
        state=ReviewState.PENDING,
        requested_at=T0 + timedelta(minutes=minute),
        attempt=1,
        principal=Principal(subject="u-1", roles=("requester",), scopes=("workflow:procurement",)),
        request_event_id=uuid.uuid4(),
    )


async def _decide(
    store: SqliteReviewStore,
    review_id: uuid.UUID,
    *,
    reviewer: str = "maria",
    decision: str = "edit",
    state: ReviewState = ReviewState.DECIDED,
) -> bool:
    return await store.decide(
        review_id,
        state=state,
        decision=decision,
        reviewer=reviewer,
        comment=f"by {reviewer}",
        edited_action={**ORDER, "amount": 10_000.0} if decision == "edit" else None,
        at=T0 + timedelta(hours=1),
    )


async def test_add_is_idempotent_and_round_trips(store: SqliteReviewStore) -> None:
    review = _review(minute=0)
    assert await store.add(review) is True
    assert await store.add(review.model_copy(update={"summary": "changed"})) is False
    assert await store.pending(tenant=None, limit=10, offset=0) == [review]


async def test_pending_is_oldest_first_filtered_by_tenant(store: SqliteReviewStore) -> None:
    late, early, other = _review(minute=5), _review(minute=1), _review(minute=3, tenant="globex")
    for review in (late, early, other):
        await store.add(review)

    assert await store.pending(tenant="acme", limit=10, offset=0) == [early, late]
    assert await store.pending(tenant="globex", limit=10, offset=0) == [other]
    assert await store.pending(tenant="initech", limit=10, offset=0) == []
    assert await store.pending(tenant=None, limit=10, offset=0) == [early, other, late]


async def test_pending_is_paginated(store: SqliteReviewStore) -> None:
    reviews = [_review(minute=m) for m in range(5)]
    for review in reversed(reviews):
        await store.add(review)

    pages = [await store.pending(tenant="acme", limit=2, offset=o) for o in (0, 2, 4, 6)]

    assert pages == [reviews[0:2], reviews[2:4], reviews[4:5], []]


async def test_withdraw_for_touches_only_that_workflows_pending_reviews(
    store: SqliteReviewStore,
) -> None:
    ended, running = uuid.uuid4(), uuid.uuid4()
    first, second = _review(minute=0, workflow_id=ended), _review(minute=1, workflow_id=ended)
    kept = _review(minute=2, workflow_id=running)
    for review in (first, second, kept):
        await store.add(review)

    assert await store.withdraw_for(ended) == 2
    assert await store.pending(tenant=None, limit=10, offset=0) == [kept]
    assert await store.withdraw_for(ended) == 0
    assert await store.withdraw_for(uuid.uuid4()) == 0


async def test_withdrawn_review_stays_withdrawn_when_redelivered(store: SqliteReviewStore) -> None:
    review = _review(minute=0)
    await store.add(review)
    await store.withdraw_for(review.workflow_id)

    assert await store.add(review) is False
    assert await store.pending(tenant=None, limit=10, offset=0) == []


async def test_get_returns_every_column_or_none(store: SqliteReviewStore) -> None:
    review = _review(minute=0)
    await store.add(review)

    assert await store.get(review.review_id) == review
    assert await store.get(uuid.uuid4()) is None


@pytest.mark.parametrize(
    "principal",
    [Principal(subject="user-1"), Principal(subject="user-1", roles=("requester",))],
    ids=["no-roles", "roles"],
)
async def test_the_principal_round_trips(store: SqliteReviewStore, principal: Principal) -> None:
    review = _review(minute=0).model_copy(update={"principal": principal})
    await store.add(review)

    assert await store.get(review.review_id) == review


async def test_pending_filters_by_workflow_and_tenant(store: SqliteReviewStore) -> None:
    order = _review(minute=0)
    refund = _review(minute=1, workflow="refund")
    other_tenant = _review(minute=2, tenant="globex", workflow="refund")
    for review in (order, refund, other_tenant):
        await store.add(review)

    assert await store.pending(tenant=None, workflow="refund", limit=10, offset=0) == [
        refund,
        other_tenant,
    ]
    assert await store.pending(tenant="acme", workflow="refund", limit=10, offset=0) == [refund]
    assert await store.pending(tenant="globex", workflow="procurement", limit=10, offset=0) == []


async def test_decide_is_conditional_on_the_review_being_pending(
    store: SqliteReviewStore,
) -> None:
    review = _review(minute=0)
    await store.add(review)

    assert await _decide(store, review.review_id, reviewer="maria") is True
    assert await _decide(store, review.review_id, reviewer="bob", decision="reject") is False

    decided = await store.get(review.review_id)
    assert decided is not None
    assert decided.state is ReviewState.DECIDED
    assert (decided.decision, decided.decided_by, decided.comment) == ("edit", "maria", "by maria")
    assert decided.decided_at == T0 + timedelta(hours=1)
    assert decided.edited_action == {**ORDER, "amount": 10_000.0}
    assert await store.pending(tenant=None, limit=10, offset=0) == []


async def test_decide_on_an_unknown_review_is_false(store: SqliteReviewStore) -> None:
    assert await _decide(store, uuid.uuid4()) is False


async def test_a_withdrawn_review_cannot_be_decided(store: SqliteReviewStore) -> None:
    review = _review(minute=0)
    await store.add(review)
    await store.withdraw_for(review.workflow_id)

    assert await _decide(store, review.review_id) is False
    withdrawn = await store.get(review.review_id)
    assert withdrawn is not None
    assert (withdrawn.state, withdrawn.decision) == (ReviewState.WITHDRAWN, None)


async def test_reopen_undoes_a_decision(store: SqliteReviewStore) -> None:
    review = _review(minute=0)
    await store.add(review)
    await _decide(store, review.review_id)

    await store.reopen(review.review_id)

    assert await store.get(review.review_id) == review
    assert await store.pending(tenant=None, limit=10, offset=0) == [review]
    assert await _decide(store, review.review_id, reviewer="bob") is True


async def test_due_lists_pending_reviews_past_their_deadline_soonest_first(
    store: SqliteReviewStore,
) -> None:
    later = _review(minute=0, expires_in=timedelta(hours=2))
    sooner = _review(minute=1, expires_in=timedelta(hours=1))
    not_yet = _review(minute=2, expires_in=timedelta(hours=3))
    decided = _review(minute=3, expires_in=timedelta(minutes=30))
    for review in (later, sooner, not_yet, decided):
        await store.add(review)
    await _decide(store, decided.review_id)

    assert await store.due(T0) == []
    assert await store.due(T0 + timedelta(hours=1)) == [sooner]  # the deadline itself is due
    assert await store.due(T0 + timedelta(hours=2, seconds=1)) == [sooner, later]


async def test_due_compares_instants_whatever_the_offset(store: SqliteReviewStore) -> None:
    paris = timezone(timedelta(hours=2))
    review = _review(minute=0).model_copy(
        update={"expires_at": datetime(2025, 6, 1, 10, 30, tzinfo=paris)}  # 08:30 UTC
    )
    await store.add(review)

    assert [r.review_id for r in await store.due(T0)] == [review.review_id]  # 09:00 UTC


async def test_a_file_of_an_older_schema_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "hitl.sqlite3"
    async with aiosqlite.connect(path) as conn:
        await conn.execute("CREATE TABLE reviews (review_id TEXT PRIMARY KEY, action TEXT)")
        await conn.execute("INSERT INTO reviews VALUES ('old', '{}')")
        await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
        await conn.commit()

    async with open_store(path) as reopened:
        review = _review(minute=0)
        assert await reopened.add(review) is True
        assert await reopened.pending(tenant=None, limit=10, offset=0) == [review]


async def test_reviews_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "hitl.sqlite3"
    review = _review(minute=0)
    async with open_store(path) as first:
        await first.add(review)
    async with open_store(path) as second:
        assert await second.get(review.review_id) == review
