"""The inbox's SQLite store: one row per call id, pages of pending calls, retention."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from pactmesh_tools.adapters.inbox import SCHEMA_VERSION, open_inbox

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_call_is_recorded_once(tmp_path: Path) -> None:
    call_id = uuid.uuid4()
    async with open_inbox(tmp_path / "inbox.sqlite3") as inbox:
        assert await inbox.record(call_id=call_id, envelope="{}", traceparent=TRACEPARENT)
        assert not await inbox.record(call_id=call_id, envelope="{1}", traceparent=None)
        [pending] = await inbox.pending(after=0, limit=10)

    assert (pending.call_id, pending.envelope, pending.traceparent) == (call_id, "{}", TRACEPARENT)


async def test_recorded_calls_survive_a_restart_and_are_paged_in_order(tmp_path: Path) -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    async with open_inbox(tmp_path / "inbox.sqlite3") as inbox:
        for call_id in ids:
            await inbox.record(call_id=call_id, envelope="{}", traceparent=None)
        await inbox.finish([ids[1]])

    async with open_inbox(tmp_path / "inbox.sqlite3") as inbox:
        first = await inbox.pending(after=0, limit=2)
        rest = await inbox.pending(after=first[-1].seq, limit=10)

    assert [c.call_id for c in first + rest] == [ids[0], ids[2], ids[3], ids[4]]


async def test_pruning_removes_only_done_calls_past_retention(tmp_path: Path) -> None:
    clock = Clock()
    old_done, recent_done, old_pending = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    async with open_inbox(tmp_path / "inbox.sqlite3", clock=clock) as inbox:
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
        [still_pending, redelivered] = await inbox.pending(after=0, limit=10)

    assert (still_pending.call_id, redelivered.call_id) == (old_pending, old_done)


async def test_sequence_numbers_are_not_reused_after_pruning(tmp_path: Path) -> None:
    clock = Clock()
    async with open_inbox(tmp_path / "inbox.sqlite3", clock=clock) as inbox:
        first = uuid.uuid4()
        await inbox.record(call_id=first, envelope="{}", traceparent=None)
        [row] = await inbox.pending(after=0, limit=1)
        await inbox.finish([first])
        clock.now += 10
        assert await inbox.prune(older_than_s=1) == 1

        await inbox.record(call_id=uuid.uuid4(), envelope="{}", traceparent=None)
        assert len(await inbox.pending(after=row.seq, limit=1)) == 1


async def test_the_file_uses_wal_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    async with open_inbox(path):
        pass
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(RuntimeError, match="newer than"):
        async with open_inbox(path):
            pass


async def test_a_commit_that_fails_leaves_nothing_behind_and_loses_no_other_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk fails a commit: the call is not recorded (its retry records it), and a
    call recorded at the same time on the shared connection is recorded or refused, never
    reported stored and then lost."""
    path = tmp_path / "inbox.sqlite3"
    first, second = uuid.uuid4(), uuid.uuid4()
    async with open_inbox(path) as inbox:
        conn = inbox._conn
        commit = conn.commit
        failures = [sqlite3.OperationalError("database or disk is full")]

        async def full_once() -> None:
            if failures:
                raise failures.pop()
            await commit()

        monkeypatch.setattr(conn, "commit", full_once)
        results = await asyncio.gather(
            inbox.record(call_id=first, envelope="{}", traceparent=None),
            inbox.record(call_id=second, envelope="{}", traceparent=None),
            return_exceptions=True,
        )
        assert [type(r) for r in results] == [sqlite3.OperationalError, bool]
        assert await inbox.pending(after=0, limit=10) != []
        assert await inbox.record(call_id=first, envelope="{}", traceparent=None), "the retry"
    with closing(sqlite3.connect(path)) as db:
        stored = {row[0] for row in db.execute("SELECT call_id FROM inbox")}
    assert stored == {str(first), str(second)}
