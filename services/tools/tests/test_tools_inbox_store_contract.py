"""One suite for both inbox stores, SQLite and Postgres, each opened as the service
opens it (``open_inbox(settings)``): one row per call id, pending calls claimed oldest
first under a lease, retention; then the file of the previous release."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from alembic.util import CommandError
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_tools.adapters.inbox import INBOX_FILE, open_inbox
from pactmesh_tools.domain.inbox import Inbox, PendingCall
from pactmesh_tools.settings import Settings

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
LEASE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def settings(store_backend: StoreBackend) -> Settings:
    """The tools service's settings selecting the inbox under test."""
    return Settings(**store_backend.settings())


async def _claim(inbox: Inbox, limit: int = 10) -> list[PendingCall]:
    return await inbox.claim(limit=limit, lease_s=LEASE)


async def test_a_call_is_recorded_once(settings: Settings) -> None:
    call_id = uuid.uuid4()
    async with open_inbox(settings) as inbox:
        assert await inbox.record(call_id=call_id, envelope="{}", traceparent=TRACEPARENT)
        assert not await inbox.record(call_id=call_id, envelope="{1}", traceparent=None)
        [pending] = await _claim(inbox)

    assert (pending.call_id, pending.envelope, pending.traceparent) == (call_id, "{}", TRACEPARENT)


async def test_recorded_calls_survive_a_restart_and_are_paged_in_order(settings: Settings) -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    async with open_inbox(settings) as inbox:
        for call_id in ids:
            await inbox.record(call_id=call_id, envelope="{}", traceparent=None)
        await inbox.finish([ids[1]])

    async with open_inbox(settings) as inbox:
        first = await _claim(inbox, limit=2)
        rest = await _claim(inbox, limit=10)

    assert [c.call_id for c in first + rest] == [ids[0], ids[2], ids[3], ids[4]]


async def test_pruning_removes_only_done_calls_past_retention(settings: Settings) -> None:
    clock = Clock()
    old_done, recent_done, old_pending = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with open_inbox(settings, clock=clock) as inbox:
        for call_id in (old_done, old_pending, recent_done):
            await inbox.record(call_id=call_id, envelope="{}", traceparent=None)
        await inbox.finish([old_done])
        clock.now += 3_000
        await inbox.finish([recent_done])
        clock.now += 1_000

        assert await inbox.prune(older_than_s=3_600) == 1
        # A redelivery is still recognised unless its row was pruned.
        assert not await inbox.record(call_id=recent_done, envelope="{}", traceparent=None)
        assert await inbox.record(call_id=old_done, envelope="{}", traceparent=None)
        [still_pending, redelivered] = await _claim(inbox)

    assert (still_pending.call_id, redelivered.call_id) == (old_pending, old_done)


async def test_sequence_numbers_are_not_reused_after_pruning(settings: Settings) -> None:
    clock = Clock()
    async with open_inbox(settings, clock=clock) as inbox:
        first = uuid.uuid4()
        await inbox.record(call_id=first, envelope="{}", traceparent=None)
        [row] = await _claim(inbox, limit=1)
        await inbox.finish([first])
        clock.now += 10
        assert await inbox.prune(older_than_s=1) == 1

        await inbox.record(call_id=uuid.uuid4(), envelope="{}", traceparent=None)
        [later] = await _claim(inbox, limit=1)
        assert later.seq > row.seq


async def test_a_claimed_call_is_left_to_its_claimer_until_the_lease_passes(
    settings: Settings,
) -> None:
    clock = Clock()
    held, renewed, given_back = (uuid.uuid4() for _ in range(3))
    async with open_inbox(settings, clock=clock) as inbox:
        for call_id in (held, renewed, given_back):
            await inbox.record(call_id=call_id, envelope="{}", traceparent=None)
        assert len(await _claim(inbox)) == 3
        await inbox.renew([given_back], lease_s=0)
        assert [c.call_id for c in await _claim(inbox)] == [given_back]

        clock.now += LEASE - 1
        await inbox.renew([renewed], lease_s=LEASE)
        assert await _claim(inbox) == []
        clock.now += 1
        assert [c.call_id for c in await _claim(inbox)] == [held, given_back]
        await inbox.finish([held, given_back])
        clock.now += LEASE
        assert [c.call_id for c in await _claim(inbox)] == [renewed]
        await inbox.finish([renewed])
        await inbox.renew([renewed], lease_s=0)  # a done call is not pending again
        assert await _claim(inbox) == []


async def test_the_dispatchers_of_several_instances_never_claim_one_call_twice(
    settings: Settings,
) -> None:
    """On Postgres two instances claim from one inbox at once (FOR UPDATE SKIP LOCKED)."""
    ids = [uuid.uuid4() for _ in range(60)]
    async with open_inbox(settings) as one, open_inbox(settings) as two:
        for call_id in ids:
            await one.record(call_id=call_id, envelope="{}", traceparent=None)
        claims = await asyncio.gather(
            *(inbox.claim(limit=7, lease_s=LEASE) for _ in range(6) for inbox in (one, two))
        )
    claimed = [call.call_id for batch in claims for call in batch]
    assert sorted(claimed) == sorted(ids)


async def test_the_file_uses_wal_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    async with open_inbox(settings):
        pass
    with closing(sqlite3.connect(tmp_path / INBOX_FILE)) as db, db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        db.execute("UPDATE alembic_version_tools SET version_num = '9999'")

    with pytest.raises(CommandError, match="9999"):
        async with open_inbox(settings):
            pass


PREVIOUS_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE,
    envelope TEXT NOT NULL,
    traceparent TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done')),
    received_at REAL NOT NULL,
    done_at REAL
);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox (seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS inbox_done ON inbox (done_at) WHERE status = 'done';
PRAGMA user_version = 1;
"""
"""The inbox exactly as the previous release created it."""


async def test_the_inbox_of_the_previous_release_opens_with_its_pending_calls(
    tmp_path: Path,
) -> None:
    pending, done = uuid.uuid4(), uuid.uuid4()
    with closing(sqlite3.connect(tmp_path / INBOX_FILE)) as db, db:
        db.executescript(PREVIOUS_SCHEMA)
        db.execute(
            "INSERT INTO inbox VALUES (7, ?, '{}', NULL, 'pending', 1.0, NULL)", (str(pending),)
        )
        db.execute("INSERT INTO inbox VALUES (8, ?, '{}', NULL, 'done', 1.0, 2.0)", (str(done),))

    async with open_inbox(Settings(data_dir=tmp_path)) as inbox:
        [left] = await _claim(inbox)
        assert (left.seq, left.call_id) == (7, pending)
        assert not await inbox.record(call_id=done, envelope="{}", traceparent=None)
        await inbox.record(call_id=uuid.uuid4(), envelope="{}", traceparent=None)
        [new] = await _claim(inbox)
        assert new.seq > 8
