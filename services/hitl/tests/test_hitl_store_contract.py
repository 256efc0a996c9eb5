"""One suite for both review stores, SQLite and Postgres, each opened as hitl opens it
(``open_store(settings)``); then files written before the store used Alembic, opened by
this release."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import ReviewDecided, ReviewDecision
from pactmesh_contracts.topics import REVIEWS_DECIDED
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_hitl.adapters.rows import COLUMNS, row_of, utc_text
from pactmesh_hitl.adapters.store import SQLITE_FILE, open_store
from pactmesh_hitl.domain.reviews import (
    ListQuery,
    Review,
    ReviewPriority,
    ReviewState,
    ReviewStore,
)
from pactmesh_hitl.settings import Settings

T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
PRINCIPAL = Principal(subject="u-1", roles=("requester",), scopes=("workflow:procurement",))
ORDER = {
    "action_type": "purchase_order.v1",
    "vendor": "Acme Supplies",
    "items": [{"description": "laptops", "quantity": 30, "unit_price": 1000.0}],
    "amount": 30_000.0,
    "currency": "USD",
}


@pytest.fixture
def settings(store_backend: StoreBackend) -> Settings:
    """hitl's settings selecting the store under test."""
    return Settings(**store_backend.settings())


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[ReviewStore]:
    async with open_store(settings) as opened:
        yield opened


def _event(review_id: uuid.UUID, decision: str = "approve") -> Envelope[ReviewDecided]:
    decided = ReviewDecided(
        review_id=review_id, decision=ReviewDecision(decision), reviewer="maria"
    )
    return new_event(decided, workflow_id=uuid.uuid4(), tenant="acme", principal=PRINCIPAL)


async def _expire(store: ReviewStore, review_id: uuid.UUID, at: datetime) -> bool:
    return await store.expire(
        review_id,
        actor="policy:expiry",
        reason="deadline passed",
        event=_event(review_id, "expire"),
        now=at,
    )


def _review(
    *,
    minute: int,
    tenant: str = "acme",
    workflow_id: uuid.UUID | None = None,
    workflow: str = "procurement",
    expires_in: timedelta = timedelta(days=1),
    priority: ReviewPriority = ReviewPriority.NORMAL,
    attempt: int = 0,
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
        attempt=attempt,
        priority=priority,
        principal=PRINCIPAL,
        request_event_id=uuid.uuid4(),
    )


async def _decide(
    store: ReviewStore,
    review_id: uuid.UUID,
    *,
    reviewer: str = "maria",
    decision: str = "edit",
    at: datetime = T0 + timedelta(hours=1),
) -> bool:
    return await store.decide(
        review_id,
        decision=decision,
        reviewer=reviewer,
        comment=f"by {reviewer}",
        edited_action={**ORDER, "amount": 10_000.0} if decision == "edit" else None,
        detail={"decision": decision},
        event=_event(review_id, decision),
        now=at,
    )


async def _pending(store: ReviewStore, tenant: str = "acme", **query: Any) -> list[Review]:
    return await store.find(ListQuery(tenant=tenant, **query), now=T0)


async def test_add_is_idempotent_and_round_trips(store: ReviewStore) -> None:
    review = _review(minute=0, priority=ReviewPriority.URGENT)
    assert await store.add(review) is True
    assert await store.add(review.model_copy(update={"summary": "changed"})) is False
    assert await _pending(store) == [review]
    assert [h.action for h in await store.history(review.review_id)] == ["requested"]


async def test_open_reviews_are_the_pending_ones_of_every_tenant(store: ReviewStore) -> None:
    urgent, other, decided = (
        _review(minute=0, priority=ReviewPriority.URGENT),
        _review(minute=1, tenant="globex"),
        _review(minute=2),
    )
    for review in (urgent, other, decided):
        await store.add(review)
    assert await _decide(store, decided.review_id)

    found = sorted(await store.open_reviews(), key=lambda row: row[1])

    assert found == [("urgent", urgent.requested_at), ("normal", other.requested_at)]


async def test_find_is_oldest_first_within_one_tenant(store: ReviewStore) -> None:
    late, early, other = _review(minute=5), _review(minute=1), _review(minute=3, tenant="globex")
    for review in (late, early, other):
        await store.add(review)

    assert await _pending(store, "acme") == [early, late]
    assert await _pending(store, "globex") == [other]
    assert await _pending(store, "initech") == []


async def test_find_pages_by_key_not_by_offset(store: ReviewStore) -> None:
    reviews = [_review(minute=m) for m in range(5)]
    for review in reversed(reviews):
        await store.add(review)

    first = await _pending(store, limit=2)
    late_arrival = _review(minute=10)
    await store.add(late_arrival)
    second = await _pending(store, limit=2, after=(first[-1].requested_at, first[-1].review_id))
    rest = await _pending(store, limit=10, after=(second[-1].requested_at, second[-1].review_id))

    assert first == reviews[0:2]
    assert second == reviews[2:4]
    assert rest == [reviews[4], late_arrival]


async def test_same_instant_reviews_are_ordered_by_id_and_none_is_skipped(
    store: ReviewStore,
) -> None:
    twins = sorted((_review(minute=0) for _ in range(3)), key=lambda r: str(r.review_id))
    for review in twins:
        await store.add(review)

    seen: list[Review] = []
    after = None
    for _ in range(4):
        page = await _pending(store, limit=1, after=after)
        if not page:
            break
        seen += page
        after = (page[-1].requested_at, page[-1].review_id)

    assert seen == twins


async def test_find_filters_by_workflow_priority_and_age(store: ReviewStore) -> None:
    order = _review(minute=0, priority=ReviewPriority.HIGH)
    refund = _review(minute=10, workflow="refund", priority=ReviewPriority.URGENT)
    low = _review(minute=20, workflow="refund", priority=ReviewPriority.LOW)
    for review in (order, refund, low):
        await store.add(review)

    assert await _pending(store, workflow="refund") == [refund, low]
    urgent_or_high = (ReviewPriority.URGENT, ReviewPriority.HIGH)
    assert await _pending(store, priorities=urgent_or_high) == [order, refund]
    cut = T0 + timedelta(minutes=10)
    assert await _pending(store, requested_before=cut) == [order, refund]
    assert await _pending(store, requested_after=cut) == [refund, low]
    assert await _pending(store, requested_after=cut, requested_before=cut) == [refund]


async def test_state_filters(store: ReviewStore) -> None:
    waiting, claimed, lapsed, decided = (_review(minute=m) for m in range(4))
    for review in (waiting, claimed, lapsed, decided):
        await store.add(review)
    now = T0 + timedelta(hours=1)
    await store.claim(claimed.review_id, reviewer="bob", until=now + timedelta(minutes=5), now=now)
    await store.claim(lapsed.review_id, reviewer="bob", until=T0, now=T0 - timedelta(minutes=1))
    await _decide(store, decided.review_id)

    def ids(reviews: list[Review]) -> list[uuid.UUID]:
        return [r.review_id for r in reviews]

    async def find(state: Any) -> list[uuid.UUID]:
        return ids(await store.find(ListQuery(tenant="acme", state=state), now=now))

    assert await find("pending") == ids([waiting, claimed, lapsed])
    assert await find("claimed") == ids([claimed])
    assert await find("decided") == ids([decided])
    assert await find("expired") == []


async def test_withdraw_for_touches_only_that_workflows_pending_reviews(
    store: ReviewStore,
) -> None:
    ended, running = uuid.uuid4(), uuid.uuid4()
    first, second = _review(minute=0, workflow_id=ended), _review(minute=1, workflow_id=ended)
    kept = _review(minute=2, workflow_id=running)
    for review in (first, second, kept):
        await store.add(review)

    assert await store.withdraw_for(ended, now=T0) == 2
    assert await _pending(store) == [kept]
    assert await store.withdraw_for(ended, now=T0) == 0
    assert await store.withdraw_for(uuid.uuid4(), now=T0) == 0
    assert [h.action for h in await store.history(first.review_id)] == ["requested", "withdrawn"]


async def test_withdrawn_review_stays_withdrawn_when_redelivered(store: ReviewStore) -> None:
    review = _review(minute=0)
    await store.add(review)
    await store.withdraw_for(review.workflow_id, now=T0)

    assert await store.add(review) is False
    assert await _pending(store) == []


async def test_get_returns_every_column_or_none(store: ReviewStore) -> None:
    review = _review(minute=0)
    await store.add(review)

    assert await store.get(review.review_id) == review
    assert await store.get(uuid.uuid4()) is None


@pytest.mark.parametrize(
    "principal",
    [Principal(subject="user-1"), Principal(subject="user-1", roles=("requester",))],
    ids=["no-roles", "roles"],
)
async def test_the_principal_round_trips(store: ReviewStore, principal: Principal) -> None:
    review = _review(minute=0).model_copy(update={"principal": principal})
    await store.add(review)

    assert await store.get(review.review_id) == review


async def test_decide_is_conditional_on_the_review_being_pending(
    store: ReviewStore,
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
    assert await _pending(store) == []
    assert [(h.action, h.actor) for h in await store.history(review.review_id)] == [
        ("requested", "workflow"),
        ("decided", "maria"),
    ]


async def test_decide_respects_a_live_claim_and_ignores_a_lapsed_one(
    store: ReviewStore,
) -> None:
    review = _review(minute=0)
    await store.add(review)
    at = T0 + timedelta(hours=1)
    assert await store.claim(review.review_id, reviewer="bob", until=at, now=T0)

    assert (
        await _decide(store, review.review_id, reviewer="maria", at=at - timedelta(seconds=1))
        is False
    )
    assert await _decide(store, review.review_id, reviewer="maria", at=at) is True


async def test_decide_refuses_a_review_past_its_deadline(store: ReviewStore) -> None:
    review = _review(minute=0, expires_in=timedelta(minutes=30))
    await store.add(review)

    assert await _decide(store, review.review_id, at=T0 + timedelta(minutes=30)) is False


async def test_claims_exclude_others_until_they_lapse_and_only_the_holder_releases(
    store: ReviewStore,
) -> None:
    review = _review(minute=0)
    await store.add(review)
    until = T0 + timedelta(minutes=15)

    assert await store.claim(review.review_id, reviewer="bob", until=until, now=T0)
    assert not await store.claim(review.review_id, reviewer="maria", until=until, now=T0)
    later = until + timedelta(minutes=5)
    assert await store.claim(review.review_id, reviewer="bob", until=later, now=T0)  # extends
    claimed = await store.get(review.review_id)
    assert claimed is not None
    assert (claimed.claimed_by, claimed.claimed_until) == ("bob", later)
    assert not await store.release(review.review_id, reviewer="maria", now=T0)
    assert await store.release(review.review_id, reviewer="bob", now=T0)
    assert await store.claim(review.review_id, reviewer="maria", until=until, now=T0)
    assert [(h.action, h.actor) for h in await store.history(review.review_id)] == [
        ("requested", "workflow"),
        ("claimed", "bob"),
        ("claimed", "bob"),
        ("released", "bob"),
        ("claimed", "maria"),
    ]


async def test_decide_on_an_unknown_review_is_false(store: ReviewStore) -> None:
    assert await _decide(store, uuid.uuid4()) is False


async def test_a_withdrawn_review_cannot_be_decided(store: ReviewStore) -> None:
    review = _review(minute=0)
    await store.add(review)
    await store.withdraw_for(review.workflow_id, now=T0)

    assert await _decide(store, review.review_id) is False
    withdrawn = await store.get(review.review_id)
    assert withdrawn is not None
    assert (withdrawn.state, withdrawn.decision) == (ReviewState.WITHDRAWN, None)


async def test_a_decision_and_an_expiry_leave_their_events_in_the_outbox(
    store: ReviewStore,
) -> None:
    decided, expired, refused = _review(minute=0), _review(minute=1), _review(minute=2)
    for review in (decided, expired, refused):
        await store.add(review)
    at = T0 + timedelta(hours=1)
    await store.withdraw_for(refused.workflow_id, now=at)

    decision = _event(decided.review_id)
    assert await store.decide(
        decided.review_id,
        reviewer="maria",
        decision="approve",
        comment="",
        edited_action=None,
        detail={},
        event=decision,
        now=at,
    )
    assert await _expire(store, expired.review_id, at)
    assert not await _decide(store, refused.review_id, at=at)  # nothing written

    def due(seconds: float) -> float:
        return (at + timedelta(seconds=seconds)).timestamp()

    early = await store.outbox.claim_unpublished(now=due(29), lease_until=due(90), limit=10)
    assert early == []  # the writer's lease (30 s by default)
    entries = await store.outbox.claim_unpublished(now=due(30), lease_until=due(90), limit=10)
    assert len(entries) == 2
    assert decision in [REVIEWS_DECIDED.adapter.validate_json(e.event) for e in entries]
    await store.outbox.remove_published([e.event_id for e in entries])
    assert await store.outbox.claim_unpublished(now=due(999), lease_until=due(9999), limit=9) == []


async def test_retention_prunes_settled_reviews_and_their_history_only(
    store: ReviewStore,
) -> None:
    decided, withdrawn, waiting, recent = (_review(minute=m) for m in range(4))
    for review in (decided, withdrawn, waiting, recent):
        await store.add(review)
    await _decide(store, decided.review_id, at=T0 + timedelta(hours=1))
    await store.withdraw_for(withdrawn.workflow_id, now=T0 + timedelta(hours=2))
    await _decide(store, recent.review_id, at=T0 + timedelta(days=2))

    assert await store.prune(settled_before=T0 + timedelta(days=1)) == {"reviews": 2}

    assert await store.get(decided.review_id) is None
    assert await store.get(withdrawn.review_id) is None
    assert await store.history(decided.review_id) == []
    assert await store.get(waiting.review_id) == waiting  # pending: never pruned
    assert await store.get(recent.review_id) is not None
    assert await store.prune(settled_before=T0 + timedelta(days=1)) == {"reviews": 0}


async def test_an_escalated_request_marks_the_expired_review_it_follows(
    store: ReviewStore,
) -> None:
    first = _review(minute=0)
    await store.add(first)
    assert await _expire(store, first.review_id, T0 + timedelta(days=1))
    second = _review(minute=60 * 24, workflow_id=first.workflow_id, attempt=1).model_copy(
        update={"required_role": "finance-director"}
    )

    await store.add(second)

    escalated = await store.get(first.review_id)
    assert escalated is not None
    assert escalated.state is ReviewState.ESCALATED
    [*_, expired, moved] = await store.history(first.review_id)
    assert (expired.action, expired.actor) == ("expired", "policy:expiry")
    assert (moved.action, moved.detail) == (
        "escalated",
        {"to_role": "finance-director", "review_id": str(second.review_id)},
    )
    [requested] = await store.history(second.review_id)
    assert requested.detail["escalated_from"] == [str(first.review_id)]


async def test_due_lists_pending_reviews_past_their_deadline_soonest_first(
    store: ReviewStore,
) -> None:
    later = _review(minute=0, expires_in=timedelta(hours=2))
    sooner = _review(minute=1, expires_in=timedelta(hours=1))
    not_yet = _review(minute=2, expires_in=timedelta(hours=3))
    decided = _review(minute=3, expires_in=timedelta(minutes=30))
    for review in (later, sooner, not_yet, decided):
        await store.add(review)
    await _decide(store, decided.review_id, at=T0)

    assert await store.due(T0) == []
    assert await store.due(T0 + timedelta(hours=1)) == [sooner]  # the deadline itself is due
    assert await store.due(T0 + timedelta(hours=2, seconds=1)) == [sooner, later]


async def test_due_compares_instants_whatever_the_offset(store: ReviewStore) -> None:
    paris = timezone(timedelta(hours=2))
    review = _review(minute=0).model_copy(
        update={"expires_at": datetime(2025, 6, 1, 10, 30, tzinfo=paris)}  # 08:30 UTC
    )
    await store.add(review)

    assert [r.review_id for r in await store.due(T0)] == [review.review_id]  # 09:00 UTC


async def test_a_file_older_than_version_2_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / SQLITE_FILE
    async with aiosqlite.connect(path) as conn:
        await conn.execute("CREATE TABLE reviews (review_id TEXT PRIMARY KEY, action TEXT)")
        await conn.execute("INSERT INTO reviews VALUES ('old', '{}')")
        await conn.execute("PRAGMA user_version = 1")
        await conn.commit()

    async with open_store(Settings(data_dir=tmp_path)) as reopened:
        review = _review(minute=0)
        assert await reopened.add(review) is True
        assert await _pending(reopened) == [review]


V2_TABLE = """
CREATE TABLE reviews (
    review_id TEXT PRIMARY KEY, workflow_id TEXT NOT NULL, workflow TEXT NOT NULL,
    tenant TEXT NOT NULL, rule TEXT NOT NULL, summary TEXT NOT NULL,
    action_type TEXT NOT NULL, action TEXT NOT NULL, role TEXT NOT NULL,
    expires_at TEXT NOT NULL, state TEXT NOT NULL, requested_at TEXT NOT NULL,
    attempt INTEGER NOT NULL, principal TEXT, request_event_id TEXT, decision TEXT,
    decided_by TEXT, decided_at TEXT, comment TEXT, edited_action TEXT
)
"""


async def test_a_version_2_file_is_migrated_with_its_reviews_and_their_history(
    tmp_path: Path,
) -> None:
    path = tmp_path / SQLITE_FILE
    waiting, decided = _review(minute=0), _review(minute=1)
    async with aiosqlite.connect(path) as conn:
        await conn.execute(V2_TABLE)
        for review, state, decision in ((waiting, "pending", None), (decided, "decided", "reject")):
            await conn.execute(
                f"INSERT INTO reviews VALUES ({', '.join('?' * 20)})",
                (
                    str(review.review_id), str(review.workflow_id), review.workflow, review.tenant,
                    review.rule, review.summary, review.action_type, json.dumps(ORDER),
                    review.required_role, review.expires_at.isoformat(), state,
                    review.requested_at.isoformat(), 0, review.principal.model_dump_json()
                    if review.principal else None, str(review.request_event_id), decision,
                    "maria" if decision else None,
                    (T0 + timedelta(hours=1)).isoformat() if decision else None,
                    "too much" if decision else None, None,
                ),
            )  # fmt: skip
        await conn.execute("PRAGMA user_version = 2")
        await conn.commit()

    async with open_store(Settings(data_dir=tmp_path)) as migrated:
        assert await _pending(migrated) == [waiting]
        old = await migrated.get(decided.review_id)
        assert old is not None
        assert (old.state, old.decided_by, old.priority) == ("decided", "maria", "normal")
        assert [
            (h.action, h.actor, h.detail.get("comment"))
            for h in await migrated.history(decided.review_id)
        ] == [("requested", "workflow", None), ("decided", "maria", "too much")]
        assert await migrated.claim(
            waiting.review_id, reviewer="bob", until=T0, now=T0 - timedelta(seconds=1)
        )


async def test_reviews_survive_reopening(settings: Settings) -> None:
    review = _review(minute=0)
    async with open_store(settings) as first:
        await first.add(review)
    async with open_store(settings) as second:
        assert await second.get(review.review_id) == review
        assert len(await second.history(review.review_id)) == 1


V3_SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    review_id        TEXT PRIMARY KEY,
    workflow_id      TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    tenant           TEXT NOT NULL,
    rule             TEXT NOT NULL,
    summary          TEXT NOT NULL,
    action_type      TEXT NOT NULL,
    action           TEXT NOT NULL,
    role             TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    state            TEXT NOT NULL,
    requested_at     TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    principal        TEXT,
    request_event_id TEXT,
    decision         TEXT,
    decided_by       TEXT,
    decided_at       TEXT,
    comment          TEXT,
    edited_action    TEXT,
    priority         TEXT NOT NULL DEFAULT 'normal',
    claimed_by       TEXT,
    claimed_until    TEXT
);
CREATE INDEX IF NOT EXISTS reviews_by_state ON reviews (state, tenant, requested_at);
CREATE INDEX IF NOT EXISTS reviews_by_workflow ON reviews (workflow_id);
CREATE INDEX IF NOT EXISTS reviews_by_deadline ON reviews (state, expires_at);
CREATE TABLE IF NOT EXISTS review_history (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    review_id TEXT NOT NULL,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS review_history_by_review ON review_history (review_id, seq);
PRAGMA user_version = 3;
"""
"""The format of the previous release's file, exactly as it wrote it."""


async def test_a_data_dir_of_the_previous_release_opens_with_its_reviews(tmp_path: Path) -> None:
    path = tmp_path / SQLITE_FILE
    waiting, decided = _review(minute=0), _review(minute=1)
    async with aiosqlite.connect(path) as conn:
        await conn.executescript(V3_SCHEMA)
        for review in (waiting, decided):
            # the columns of version 3: all but separation_of_duties, which came after
            row = row_of(review, ident=str, instant=utc_text)[:23]
            columns = COLUMNS.rsplit(",", 1)[0]
            await conn.execute(
                f"INSERT INTO reviews ({columns}) VALUES ({', '.join('?' * 23)})", row
            )
        await conn.execute(
            "UPDATE reviews SET state = 'decided', decision = 'reject', decided_by = 'maria',"
            " decided_at = ? WHERE review_id = ?",
            (utc_text(T0 + timedelta(hours=1)), str(decided.review_id)),
        )
        await conn.execute(
            "INSERT INTO review_history (review_id, at, actor, action, detail)"
            " VALUES (?, ?, 'maria', 'decided', '{\"decision\": \"reject\"}')",
            (str(decided.review_id), utc_text(T0 + timedelta(hours=1))),
        )
        await conn.commit()

    async with open_store(Settings(data_dir=tmp_path)) as store:
        assert await _pending(store) == [waiting]  # duties separated, as before
        assert waiting.separation_of_duties is True
        assert [(h.action, h.detail) for h in await store.history(decided.review_id)] == [
            ("decided", {"decision": "reject"})
        ]
        assert await _decide(store, waiting.review_id, at=T0 + timedelta(hours=2))
        # settled before the upgrade: counted from its decision
        assert await store.prune(settled_before=T0 + timedelta(minutes=61)) == {"reviews": 1}
    async with (
        aiosqlite.connect(path) as conn,
        conn.execute("SELECT version_num FROM alembic_version_hitl") as cursor,
    ):
        assert await cursor.fetchone() == ("0004",)
