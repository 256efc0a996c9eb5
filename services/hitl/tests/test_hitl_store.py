"""The SQLite review store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pactmesh_hitl.adapters.sqlite_store import SqliteReviewStore, open_store
from pactmesh_hitl.domain.reviews import Review, ReviewState

T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteReviewStore]:
    async with open_store(tmp_path / "hitl.sqlite3") as opened:
        yield opened


def _review(*, minute: int, tenant: str = "acme", workflow_id: uuid.UUID | None = None) -> Review:
    return Review(
        review_id=uuid.uuid4(),
        workflow_id=workflow_id or uuid.uuid4(),
        workflow="procurement",
        tenant=tenant,
        rule="procurement.amount_over_threshold",
        summary=f"review at {minute}",
        proposed_action={"po": "PO-1042", "amount": 30_000.0, "lines": [1, 2]},
        required_role="approver",
        expires_at=T0 + timedelta(days=1),
        state=ReviewState.PENDING,
        requested_at=T0 + timedelta(minutes=minute),
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
