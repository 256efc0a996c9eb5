"""One suite for both request stores, SQLite and Postgres, each opened as intake opens
it (``open_store(settings)``): idempotent writes, an ordered history, idempotency keys,
results, the outbox and retention. Then files written before the store used Alembic,
opened by this release."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import Channel, Outcome, RequestAccepted, RequestStatus
from pactmesh_contracts.topics import REQUESTS_ACCEPTED
from pactmesh_harness.postgres import PostgresServer
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_intake.adapters.migrations import MIGRATIONS
from pactmesh_intake.adapters.store import SQLITE_FILE, open_store
from pactmesh_intake.domain.requests import (
    KeyHolder,
    RequestStore,
    ResultView,
    Submission,
    Transition,
    next_status,
)
from pactmesh_intake.settings import Settings

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
"""The outbox lease of the settings below (``outbox_lease_s``' default)."""
PRINCIPAL = Principal(subject="alice", roles=("requester",))


@pytest.fixture
def settings(store_backend: StoreBackend) -> Settings:
    """Intake's settings selecting the store under test."""
    return Settings(**store_backend.settings())


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[RequestStore]:
    async with open_store(settings) as opened:
        yield opened


@pytest.fixture
async def request_id(store: RequestStore) -> uuid.UUID:
    rid = uuid.uuid4()
    assert await store.create(request_id=rid, tenant="acme", channel=Channel.HTTP, at=T0)
    return rid


def _transition(
    request_id: uuid.UUID, status: RequestStatus, *, seconds: int, workflow: str | None = None
) -> Transition:
    return Transition(
        event_id=uuid.uuid4(),
        request_id=request_id,
        status=status,
        service="test",
        detail=status.value,
        workflow=workflow,
        at=T0 + timedelta(seconds=seconds),
    )


def _accepted(request_id: uuid.UUID) -> Envelope[RequestAccepted]:
    accepted = RequestAccepted(text="hello", channel=Channel.HTTP)
    return new_event(accepted, workflow_id=request_id, tenant="acme", principal=PRINCIPAL)


async def _unpublished(store: RequestStore, *, at: datetime = T0 + LEASE) -> list[uuid.UUID]:
    """The outbox's events whose lease has passed at ``at`` (claimed for a minute)."""
    now = at.timestamp()
    entries = await store.outbox.claim_unpublished(now=now, lease_until=now + 60, limit=100)
    return [e.event_id for e in entries]


async def test_create_is_idempotent(store: RequestStore, request_id: uuid.UUID) -> None:
    again = await store.create(
        request_id=request_id, tenant="other", channel=Channel.KAFKA, at=T0 + timedelta(hours=1)
    )
    assert again is False
    view = await store.get(request_id)
    assert view is not None
    assert (view.tenant, view.channel, view.status) == (
        "acme",
        Channel.HTTP,
        RequestStatus.ACCEPTED,
    )
    assert [h.status for h in view.history] == [RequestStatus.ACCEPTED]
    assert view.created_at == T0


async def test_record_is_idempotent_per_event_id(
    store: RequestStore, request_id: uuid.UUID
) -> None:
    routed = _transition(request_id, RequestStatus.ROUTED, seconds=1, workflow="refund")
    assert await store.record(routed) is True
    assert await store.record(routed) is False
    view = await store.get(request_id)
    assert view is not None
    assert [h.status for h in view.history] == [RequestStatus.ACCEPTED, RequestStatus.ROUTED]
    assert view.status is RequestStatus.ROUTED
    assert view.workflow == "refund"


async def test_history_is_ordered_by_time_whatever_the_arrival_order(
    store: RequestStore, request_id: uuid.UUID
) -> None:
    await store.record(_transition(request_id, RequestStatus.WAITING_FOR_TOOL, seconds=3))
    await store.record(_transition(request_id, RequestStatus.ROUTED, seconds=1))
    await store.record(_transition(request_id, RequestStatus.RUNNING, seconds=2))
    view = await store.get(request_id)
    assert view is not None
    assert [h.status for h in view.history] == [
        RequestStatus.ACCEPTED,
        RequestStatus.ROUTED,
        RequestStatus.RUNNING,
        RequestStatus.WAITING_FOR_TOOL,
    ]
    assert [h.service for h in view.history] == ["intake", "test", "test", "test"]


async def test_a_finished_request_keeps_its_status_and_workflow(
    store: RequestStore, request_id: uuid.UUID
) -> None:
    await store.record(_transition(request_id, RequestStatus.ROUTED, seconds=1, workflow="refund"))
    await store.record(_transition(request_id, RequestStatus.COMPLETED, seconds=2))
    await store.record(_transition(request_id, RequestStatus.RUNNING, seconds=3))
    assert await store.status(request_id) is RequestStatus.COMPLETED
    await store.record(_transition(request_id, RequestStatus.DELIVERED, seconds=4))
    view = await store.get(request_id)
    assert view is not None
    assert (view.status, view.workflow) == (RequestStatus.DELIVERED, "refund")
    assert view.updated_at == T0 + timedelta(seconds=4)


async def test_a_transition_recorded_late_never_moves_the_update_time_back(
    store: RequestStore, request_id: uuid.UUID
) -> None:
    """A stream writes a terminal transition ahead of the store's group (see
    ``request_events``): what the group records after it is older."""
    await store.record(_transition(request_id, RequestStatus.DELIVERED, seconds=5))
    await store.record(_transition(request_id, RequestStatus.RUNNING, seconds=2))
    view = await store.get(request_id)
    assert view is not None
    assert view.status is RequestStatus.DELIVERED
    assert view.updated_at == T0 + timedelta(seconds=5)
    assert [h.status for h in view.history][-2:] == [RequestStatus.RUNNING, RequestStatus.DELIVERED]


async def test_retention_removes_old_requests_with_their_history_and_result(
    store: RequestStore, request_id: uuid.UUID
) -> None:
    other = uuid.uuid4()
    later = T0 + timedelta(days=2)
    await store.create(request_id=other, tenant="acme", channel=Channel.KAFKA, at=later)
    await store.record(_transition(request_id, RequestStatus.ROUTED, seconds=1))
    result = ResultView(workflow="refund", outcome=Outcome.SUCCEEDED, at=T0)
    await store.record_result(request_id=request_id, result=result)

    pruned = await store.prune(updated_before=T0 + timedelta(days=1), keys_before=T0)

    assert pruned == {"requests": 1, "idempotency_keys": 0}
    assert await store.get(request_id) is None
    assert await store.status(request_id) is None
    assert await store.result(request_id) is None
    assert await store.get(other) is not None
    # a pruned id can be created afresh, with no stale history
    assert await store.create(request_id=request_id, tenant="acme", channel=Channel.HTTP, at=T0)
    view = await store.get(request_id)
    assert view is not None
    assert [h.status for h in view.history] == [RequestStatus.ACCEPTED]
    assert view.result is None


async def test_retention_removes_keys_bound_before_their_cutoff(store: RequestStore) -> None:
    for n, at in enumerate((T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2))):
        await store.create_keyed(
            request_id=uuid.uuid4(),
            tenant="acme",
            key=f"k-{n}",
            fingerprint="f",
            at=at,
            expired_before=at - timedelta(days=1),
        )

    pruned = await store.prune(updated_before=T0, keys_before=T0 + timedelta(hours=1, seconds=1))

    assert pruned == {"requests": 0, "idempotency_keys": 2}
    fresh = uuid.uuid4()
    held = await store.create_keyed(
        request_id=fresh, tenant="acme", key="k-0", fingerprint="g", at=T0, expired_before=T0
    )
    assert held == KeyHolder(fresh, "g")


async def test_unknown_request(store: RequestStore) -> None:
    assert await store.get(uuid.uuid4()) is None
    assert await store.status(uuid.uuid4()) is None


async def test_data_survives_reopening(settings: Settings) -> None:
    rid = uuid.uuid4()
    async with open_store(settings) as first:
        await first.create(request_id=rid, tenant="acme", channel=Channel.HTTP, at=T0)
    async with open_store(settings) as second:
        assert await second.status(rid) is RequestStatus.ACCEPTED


async def test_a_key_is_held_by_its_first_claim_until_it_expires(
    store: RequestStore,
) -> None:
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async def claim(rid: uuid.UUID, digest: str, at: datetime, tenant: str = "acme") -> KeyHolder:
        return await store.create_keyed(
            tenant=tenant,
            key="k",
            request_id=rid,
            fingerprint=digest,
            at=at,
            expired_before=at - timedelta(hours=1),
        )

    held = await claim(first, "f1", T0)
    assert (held.request_id, held.fingerprint) == (first, "f1")
    held = await claim(second, "f2", T0 + timedelta(minutes=59))
    assert (held.request_id, held.fingerprint) == (first, "f1")
    held = await claim(second, "f2", T0, tenant="globex")
    assert held.request_id == second
    held = await claim(third, "f3", T0 + timedelta(hours=1, seconds=1))
    assert (held.request_id, held.fingerprint) == (third, "f3")
    # only a winning claim recorded its request
    assert [await store.status(rid) for rid in (first, second, third)] == [
        RequestStatus.ACCEPTED
    ] * 3
    assert (await store.submission(second)) == Submission(
        "globex", Channel.HTTP, RequestStatus.ACCEPTED, "f2"
    )


async def test_a_losing_claim_records_nothing(store: RequestStore) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    event = _accepted(second)
    for rid in (first, second):
        await store.create_keyed(
            tenant="acme",
            key="k",
            request_id=rid,
            fingerprint="f",
            at=T0,
            expired_before=T0 - timedelta(hours=1),
            event=event if rid == second else None,
        )

    assert await store.get(second) is None
    assert await _unpublished(store) == []


async def test_of_concurrent_claims_on_separate_stores_one_wins(settings: Settings) -> None:
    """Like two intake instances taking the same key at once (on Postgres: two pools)."""
    ids = [uuid.uuid4() for _ in range(8)]
    async with open_store(settings) as one, open_store(settings) as two:
        held = await asyncio.gather(
            *(
                (one if n % 2 else two).create_keyed(
                    tenant="acme",
                    key="k-race",
                    request_id=rid,
                    fingerprint="f",
                    at=T0,
                    expired_before=T0 - timedelta(hours=1),
                )
                for n, rid in enumerate(ids)
            )
        )
        [winner] = {h.request_id for h in held}
        assert [rid for rid in ids if await one.status(rid) is not None] == [winner]


async def test_submission_and_result(store: RequestStore, request_id: uuid.UUID) -> None:
    assert await store.submission(request_id) == Submission(
        "acme", Channel.HTTP, RequestStatus.ACCEPTED, None
    )
    result = ResultView(
        workflow="refund", outcome=Outcome.SUCCEEDED, output={"refund_id": "R-1"}, at=T0
    )

    assert await store.record_result(request_id=request_id, result=result) is True
    assert await store.record_result(request_id=request_id, result=result) is False
    assert await store.record_result(request_id=uuid.uuid4(), result=result) is False

    assert await store.result(request_id) == result
    view = await store.get(request_id)
    assert view is not None
    assert view.result == result


@pytest.mark.parametrize("current", list(RequestStatus))
async def test_transitions_follow_next_status(store: RequestStore, current: RequestStatus) -> None:
    """The status rule, however the store applies it (in SQL on Postgres)."""
    for proposed in RequestStatus:
        rid = uuid.uuid4()
        await store.create(request_id=rid, tenant="acme", channel=Channel.HTTP, at=T0)
        await store.record(_transition(rid, current, seconds=1))
        await store.record(_transition(rid, proposed, seconds=2))
        expected = next_status(next_status(RequestStatus.ACCEPTED, current), proposed)
        assert await store.status(rid) is expected, (current, proposed)


# -- the outbox --------------------------------------------------------------------------


async def test_a_created_request_leaves_its_event_in_the_outbox_until_published(
    store: RequestStore,
) -> None:
    rid = uuid.uuid4()
    event = _accepted(rid)
    assert await store.create(
        request_id=rid, tenant="acme", channel=Channel.HTTP, at=T0, event=event
    )
    assert not await store.create(
        request_id=rid, tenant="acme", channel=Channel.HTTP, at=T0, event=_accepted(rid)
    )

    assert await _unpublished(store, at=T0 + LEASE - timedelta(seconds=1)) == []  # the writer's
    now = (T0 + LEASE).timestamp()
    [entry] = await store.outbox.claim_unpublished(now=now, lease_until=now + 60, limit=10)
    assert entry.event_id == event.event_id
    assert REQUESTS_ACCEPTED.adapter.validate_json(entry.event) == event
    assert await _unpublished(store, at=T0 + LEASE + timedelta(seconds=59)) == []  # leased
    assert await _unpublished(store, at=T0 + LEASE + timedelta(seconds=60)) == [event.event_id]

    await store.outbox.remove_published([event.event_id])
    assert await _unpublished(store, at=T0 + timedelta(days=1)) == []


async def test_a_keyed_request_writes_its_event_only_when_it_wins(store: RequestStore) -> None:
    rid = uuid.uuid4()
    event = _accepted(rid)
    held = await store.create_keyed(
        request_id=rid,
        tenant="acme",
        key="k",
        fingerprint="f",
        at=T0,
        expired_before=T0 - timedelta(days=1),
        event=event,
    )

    assert held == KeyHolder(rid, "f")
    assert await _unpublished(store) == [event.event_id]


async def test_two_relays_never_claim_the_same_event(settings: Settings) -> None:
    """Two instances' relays at once (on Postgres: FOR UPDATE SKIP LOCKED)."""
    async with open_store(settings) as one, open_store(settings) as two:
        events = [_accepted(uuid.uuid4()) for _ in range(40)]
        for event in events:
            await one.create(
                request_id=event.workflow_id,
                tenant="acme",
                channel=Channel.HTTP,
                at=T0,
                event=event,
            )
        now = (T0 + LEASE).timestamp()
        claims = await asyncio.gather(
            *(
                store.outbox.claim_unpublished(now=now, lease_until=now + 60, limit=7)
                for _ in range(5)
                for store in (one, two)
            )
        )
    claimed = [e.event_id for batch in claims for e in batch]
    assert sorted(claimed) == sorted(e.event_id for e in events)


@pytest.mark.postgres
async def test_instances_starting_together_take_turns_at_migrating(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with postgres_server.fresh_database() as url:
        await asyncio.gather(*(MIGRATIONS.upgrade(url) for _ in range(4)))
        settings = Settings(data_dir=tmp_path, postgres_url=url)
        async with open_store(settings) as store:
            rid = uuid.uuid4()
            assert await store.create(request_id=rid, tenant="a", channel=Channel.HTTP, at=T0)


# -- files written before Alembic ------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    channel    TEXT NOT NULL,
    status     TEXT NOT NULL,
    workflow   TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    event_id   TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    service    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    at         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_request ON history (request_id, at);
"""
V2_CHANGES = """
ALTER TABLE requests ADD COLUMN fingerprint TEXT;
CREATE TABLE idempotency_keys (
    tenant      TEXT NOT NULL,
    key         TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
CREATE TABLE results (
    request_id TEXT PRIMARY KEY,
    result     TEXT NOT NULL
);
"""
"""The formats intake's SQLite file had before Alembic, exactly as the previous release
wrote them (``PRAGMA user_version`` 0 or 1 for the first, 2 for the second)."""


async def _alembic_version(path: Path) -> str:
    async with (
        aiosqlite.connect(path) as conn,
        conn.execute("SELECT version_num FROM alembic_version_intake") as cursor,
    ):
        row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


@pytest.mark.parametrize("user_version", [0, 1])
async def test_a_file_of_the_first_format_is_migrated(tmp_path: Path, user_version: int) -> None:
    path = tmp_path / SQLITE_FILE
    rid = uuid.uuid4()
    async with aiosqlite.connect(path) as conn:
        await conn.executescript(V1_SCHEMA)
        await conn.execute(
            "INSERT INTO requests VALUES (?, 'acme', 'kafka', 'routed', 'refund', ?, ?)",
            (str(rid), T0.isoformat(), T0.isoformat()),
        )
        await conn.execute(f"PRAGMA user_version = {user_version}")
        await conn.commit()

    async with open_store(Settings(data_dir=tmp_path)) as store:
        assert await store.submission(rid) == Submission(
            "acme", Channel.KAFKA, RequestStatus.ROUTED, None
        )
        assert await store.create(
            request_id=uuid.uuid4(), tenant="acme", channel=Channel.HTTP, at=T0, fingerprint="f"
        )
    assert await _alembic_version(path) == "0003"
    async with open_store(Settings(data_dir=tmp_path)) as reopened:  # current: nothing to do
        assert await reopened.status(rid) is RequestStatus.ROUTED


async def test_a_data_dir_of_the_previous_release_opens_with_its_requests_keys_and_results(
    tmp_path: Path,
) -> None:
    path = tmp_path / SQLITE_FILE
    rid = uuid.uuid4()
    result = ResultView(workflow="refund", outcome=Outcome.SUCCEEDED, at=T0)
    async with aiosqlite.connect(path) as conn:
        await conn.executescript(V1_SCHEMA + V2_CHANGES)
        await conn.execute(
            "INSERT INTO requests VALUES (?, 'acme', 'http', 'delivered', 'refund', ?, ?, 'f')",
            (str(rid), T0.isoformat(), T0.isoformat()),
        )
        await conn.execute(
            "INSERT INTO history VALUES (?, ?, 'accepted', 'intake', 'received over http', ?)",
            (f"created:{rid}", str(rid), T0.isoformat()),
        )
        await conn.execute(
            "INSERT INTO idempotency_keys VALUES ('acme', 'k-1', ?, 'f', ?)",
            (str(rid), T0.isoformat(timespec="microseconds")),
        )
        await conn.execute(
            "INSERT INTO results VALUES (?, ?)", (str(rid), result.model_dump_json())
        )
        await conn.execute("PRAGMA user_version = 2")
        await conn.commit()

    async with open_store(Settings(data_dir=tmp_path)) as store:
        view = await store.get(rid)
        assert view is not None
        assert (view.status, view.result, [h.status for h in view.history]) == (
            RequestStatus.DELIVERED,
            result,
            [RequestStatus.ACCEPTED],
        )
        held = await store.create_keyed(
            request_id=uuid.uuid4(),
            tenant="acme",
            key="k-1",
            fingerprint="f",
            at=T0 + timedelta(hours=1),
            expired_before=T0 - timedelta(hours=23),
        )
        assert held == KeyHolder(rid, "f")
    assert await _alembic_version(path) == "0003"


async def test_reopening_a_sqlite_file_makes_its_left_events_due_at_once(
    settings: Settings, store_backend: StoreBackend
) -> None:
    """A SQLite file has one instance: what its previous process left in the outbox is
    leased to a writer that is gone. On Postgres another instance may be the writer."""
    rid = uuid.uuid4()
    event = _accepted(rid)
    async with open_store(settings) as store:
        await store.create(request_id=rid, tenant="acme", channel=Channel.HTTP, at=T0, event=event)

    async with open_store(settings) as reopened:
        due = await _unpublished(reopened, at=T0)

    assert due == ([event.event_id] if store_backend.kind == "sqlite" else [])
