"""The stores' shared parts: the data dir's instance lock, the outbox relay, settings."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import Channel, RequestAccepted
from pactmesh_contracts.topics import REQUESTS_ACCEPTED
from pactmesh_kit.stores import InstanceLocked, StoreSettings, instance_lock
from pactmesh_kit.stores.outbox import OutboxEntry, Relay
from pactmesh_kit.stores.retention import pruning
from pactmesh_kit.stores.sqlite import GroupCommitter, connect, transaction
from pydantic_settings import SettingsConfigDict


class DemoSettings(StoreSettings):
    model_config = SettingsConfigDict(env_prefix="PACTMESH_DEMO_", extra="ignore", frozen=True)

    service_name: str = "demo"


HOLD_LOCK = """
import asyncio, sys
from pathlib import Path
from pactmesh_kit.stores import StoreSettings, instance_lock

async def main():
    settings = StoreSettings(service_name="demo", data_dir=Path(sys.argv[1]))
    async with instance_lock(settings):
        print("held", flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def _hold(settings: StoreSettings) -> None:
    async with instance_lock(settings):
        pass


def test_a_second_sqlite_instance_on_the_data_dir_is_refused_until_the_first_dies(
    tmp_path: Path,
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        settings = DemoSettings(data_dir=tmp_path)
        with pytest.raises(InstanceLocked, match="another demo instance runs on") as refused:
            asyncio.run(_hold(settings))
        assert "PACTMESH_POSTGRES_URL" in str(refused.value)
        # another service on the same data dir is fine
        asyncio.run(_hold(settings.model_copy(update={"service_name": "other"})))
    finally:
        holder.kill()  # the kernel releases the lock of a dead process
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    asyncio.run(_hold(DemoSettings(data_dir=tmp_path)))


async def test_instances_on_postgres_hold_no_lock(tmp_path: Path) -> None:
    settings = DemoSettings(data_dir=tmp_path, postgres_url="postgresql://db/x")
    async with instance_lock(settings), instance_lock(settings):
        pass
    assert not (tmp_path / "demo.lock").exists()


def test_store_settings_read_the_mesh_wide_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACTMESH_POSTGRES_URL", "postgresql://u@db:5432/mesh")
    monkeypatch.setenv("PACTMESH_DEMO_POSTGRES_POOL_SIZE", "3")
    monkeypatch.setenv("PACTMESH_OUTBOX_LEASE_S", "12")
    settings = DemoSettings()
    assert settings.postgres == "postgresql://u@db:5432/mesh"
    assert "u@db" not in repr(settings)  # the URL (and any password in it) stays secret
    assert (settings.postgres_pool_size, settings.outbox_lease_s) == (3, 12.0)


# -- the relay ----------------------------------------------------------------------------


class MemoryOutbox:
    """An outbox table in a dict: event id -> (event, publish_after)."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, tuple[str, float]] = {}

    def add(self, event: Envelope[Any], publish_after: float) -> None:
        self.rows[event.event_id] = (event.model_dump_json(), publish_after)

    async def claim_unpublished(
        self, *, now: float, lease_until: float, limit: int
    ) -> list[OutboxEntry]:
        due = sorted((after, eid) for eid, (_, after) in self.rows.items() if after <= now)
        claimed = [eid for _, eid in due[:limit]]
        for eid in claimed:
            self.rows[eid] = (self.rows[eid][0], lease_until)
        return [OutboxEntry(eid, self.rows[eid][0]) for eid in claimed]

    async def remove_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        for eid in event_ids:
            self.rows.pop(eid, None)


class Publisher:
    def __init__(self) -> None:
        self.events: list[Envelope[Any]] = []
        self.broken = False
        self.published = asyncio.Event()

    async def publish(self, event: Envelope[Any]) -> None:
        if self.broken:
            raise ConnectionError("kafka unreachable")
        self.events.append(event)
        self.published.set()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _event() -> Envelope[Any]:
    accepted = RequestAccepted(text="hello", channel=Channel.HTTP)
    return new_event(
        accepted, workflow_id=uuid.uuid4(), tenant="acme", principal=Principal(subject="a")
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def publisher() -> Publisher:
    return Publisher()


@pytest.fixture
def relay(publisher: Publisher, clock: Clock) -> Relay:
    return Relay(publisher, topic=REQUESTS_ACCEPTED, lease_s=30, interval_s=1, batch=3, clock=clock)


async def test_an_event_published_by_its_writer_is_removed_and_never_relayed(
    relay: Relay, publisher: Publisher, clock: Clock
) -> None:
    outbox, event = MemoryOutbox(), _event()
    outbox.add(event, relay.lease_until())

    await relay.publish(event)
    clock.now += 3600
    assert await relay.relay(outbox) == 0

    assert publisher.events == [event]
    assert outbox.rows == {}


async def test_what_its_writer_could_not_publish_is_relayed_once_its_lease_passed(
    relay: Relay, publisher: Publisher, clock: Clock
) -> None:
    outbox = MemoryOutbox()
    events = [_event() for _ in range(7)]  # more than a batch
    for event in events:
        outbox.add(event, relay.lease_until())
    publisher.broken = True
    with pytest.raises(ConnectionError):
        await relay.publish(events[0])
    publisher.broken = False

    clock.now += 29
    assert await relay.relay(outbox) == 0  # still the writer's
    clock.now += 1
    assert await relay.relay(outbox) == 7

    assert sorted(e.event_id for e in publisher.events) == sorted(e.event_id for e in events)
    assert publisher.events[0] == REQUESTS_ACCEPTED.adapter.validate_json(
        events[0].model_dump_json()
    )
    assert outbox.rows == {}


async def test_a_relay_round_that_cannot_publish_leaves_the_events_for_a_later_one(
    relay: Relay, publisher: Publisher, clock: Clock
) -> None:
    outbox, event = MemoryOutbox(), _event()
    outbox.add(event, clock.now)
    publisher.broken = True

    assert await relay.relay(outbox) == 0
    publisher.broken = False
    assert await relay.relay(outbox) == 0  # leased again by the failed round
    clock.now += 30
    assert await relay.relay(outbox) == 1
    assert publisher.events == [event]


async def test_the_relay_runs_until_exit(publisher: Publisher) -> None:
    outbox, event = MemoryOutbox(), _event()
    outbox.add(event, 0.0)
    relay = Relay(publisher, topic=REQUESTS_ACCEPTED, lease_s=30, interval_s=0.01)

    async with relay.running(outbox), asyncio.timeout(5):
        await publisher.published.wait()

    assert publisher.events == [event]
    assert outbox.rows == {}  # removed on exit at the latest


async def test_the_relay_waits_for_the_broker_before_its_first_round(
    publisher: Publisher,
) -> None:
    outbox, event = MemoryOutbox(), _event()
    outbox.add(event, 0.0)
    started = False
    relay = Relay(
        publisher, topic=REQUESTS_ACCEPTED, lease_s=30, interval_s=0.01, ready=lambda: started
    )

    async with relay.running(outbox):
        await asyncio.sleep(0.1)
        assert (publisher.events, outbox.rows[event.event_id][1]) == ([], 0.0)  # untouched
        started = True
        async with asyncio.timeout(5):
            await publisher.published.wait()

    assert publisher.events == [event]


async def test_pruning_runs_now_and_then_every_interval() -> None:
    rounds: list[int] = []
    fourth = asyncio.Event()

    async def prune() -> dict[str, int]:
        rounds.append(len(rounds))
        if len(rounds) == 2:
            raise ConnectionError("database unreachable")  # logged, tried again
        if len(rounds) == 4:
            fourth.set()
        return {"rows": 1}

    async with pruning("demo", prune, interval_s=0.01), asyncio.timeout(5):
        await fourth.wait()


@asynccontextmanager
async def _parent_and_child(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    """A store whose ``child`` rows need a ``parent``, checked only at COMMIT (deferred):
    a COMMIT that fails, as on a full disk."""
    async with connect(tmp_path / "store.sqlite3", "foreign_keys=ON") as conn:
        await conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        await conn.execute(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER"
            " REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)"
        )
        yield conn


async def test_a_transaction_whose_commit_fails_is_rolled_back(tmp_path: Path) -> None:
    """SQLite leaves a transaction open when its COMMIT fails (a full disk; here a
    deferred foreign key, which fails the same way): ``transaction`` rolls it back, so its
    rows neither ride along with the next caller's commit nor linger."""
    lock = asyncio.Lock()
    async with _parent_and_child(tmp_path) as conn:
        with pytest.raises(sqlite3.IntegrityError):
            async with transaction(conn, lock):
                await conn.execute("INSERT INTO child VALUES (1, 42)")
        assert not conn.in_transaction
        async with transaction(conn, lock):
            await conn.execute("INSERT INTO parent VALUES (7)")
        async with conn.execute("SELECT count(*) FROM child") as cursor:
            assert await cursor.fetchone() == (0,)


async def test_group_commits_run_waiting_writes_together_each_all_or_nothing(
    tmp_path: Path,
) -> None:
    """``GroupCommitter``: the writes waiting when a group starts run in one hop and one
    COMMIT; one that raises is rolled back alone (its caller gets the exception, the
    others commit); a COMMIT that fails fails every call of its group and leaves no
    transaction open; a group waits for the store's lock, so it never falls inside a
    ``transaction``; a cancelled caller's write runs whole or not at all."""
    lock = asyncio.Lock()
    async with _parent_and_child(tmp_path) as conn:
        grouped = GroupCommitter(conn, lock)

        def parent(n: int) -> Callable[[sqlite3.Connection], int]:
            def write(raw: sqlite3.Connection) -> int:
                raw.execute("INSERT INTO parent VALUES (?)", (n,))
                if n == 13:
                    raise ValueError("bad input")
                return n

            return write

        results = await asyncio.gather(
            *(grouped.run(parent(n)) for n in range(1, 21)), return_exceptions=True
        )
        assert grouped.commits == 1, "twenty writes waiting together, one commit"
        assert [type(r) for r in results].count(ValueError) == 1
        assert [r for r in results if isinstance(r, int)] == [n for n in range(1, 21) if n != 13]

        def orphan(raw: sqlite3.Connection) -> None:
            raw.execute("INSERT INTO child VALUES (3, 42)")  # fails only at COMMIT

        failed = await asyncio.gather(
            grouped.run(orphan), grouped.run(parent(30)), return_exceptions=True
        )
        assert [type(r) for r in failed] == [sqlite3.IntegrityError, sqlite3.IntegrityError]
        assert not conn.in_transaction

        started, release = asyncio.Event(), asyncio.Event()

        async def holder() -> None:
            async with transaction(conn, lock):
                await conn.execute("INSERT INTO parent VALUES (40)")
                started.set()
                await release.wait()
                await conn.execute("INSERT INTO parent VALUES (41)")

        def after_holder(raw: sqlite3.Connection) -> list[int]:
            raw.execute("INSERT INTO parent VALUES (42)")
            return [row[0] for row in raw.execute("SELECT id FROM parent WHERE id >= 40")]

        held = asyncio.create_task(holder())
        await started.wait()
        waiting = asyncio.create_task(grouped.run(after_holder))
        release.set()
        await held
        assert await waiting == [40, 41, 42]

        def two(raw: sqlite3.Connection) -> None:
            raw.execute("INSERT INTO parent VALUES (50)")
            raw.execute("INSERT INTO parent VALUES (51)")

        cancelled = asyncio.create_task(grouped.run(two))
        await asyncio.sleep(0)  # queued (its group may or may not have begun)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await grouped.run(parent(60)) == 60  # the group after it has committed
        async with conn.execute("SELECT id FROM parent WHERE id IN (50, 51)") as cursor:
            assert await cursor.fetchall() in ([], [(50,), (51,)])  # all or nothing
        async with conn.execute("SELECT count(*) FROM child") as cursor:
            assert await cursor.fetchone() == (0,)
