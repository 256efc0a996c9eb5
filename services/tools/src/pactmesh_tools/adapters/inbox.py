"""The inbox of tool calls in SQLite (``tools-inbox.sqlite3`` in the data directory).

One connection, WAL journal, ``synchronous=FULL``: a call recorded here survives a
crash of the process and of the machine, which is what lets the Kafka consumer commit
the request's offset as soon as ``record`` returns. Writes are one INSERT per request
and one transaction per batch of answered calls, one transaction at a time, each rolled
back whole when its commit fails (a full disk): on a shared connection, a failed commit
would otherwise leave its rows in an open transaction, where the next caller's commit
would report them written, or a rollback would drop a caller's row after it was told
the row was stored.

Done rows are kept for a retention window so that a redelivered request is recognised
and ignored; a redelivery arriving after its row was pruned runs the call again (the
idempotency key keeps its side effect single) and answers again (consumers deduplicate
by call id).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from pactmesh_tools.domain.inbox import PendingCall

SCHEMA_VERSION = 1
_SCHEMA = """
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
"""
# AUTOINCREMENT, not a plain rowid: a rowid may be reused once the newest row is
# pruned, and the dispatcher's cursor (``seq > after``) would then skip the new call.

INBOX_FILE = "tools-inbox.sqlite3"


class SqliteInbox:
    """Tool calls by call id, pending until their result is published."""

    def __init__(self, conn: aiosqlite.Connection, *, clock: Callable[[], float]) -> None:
        self._conn = conn
        self._clock = clock
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """The block's statements, committed alone, or rolled back if anything fails."""
        async with self._lock:
            try:
                yield
                await self._conn.commit()
            except BaseException:
                await self._conn.rollback()
                raise

    async def record(self, *, call_id: uuid.UUID, envelope: str, traceparent: str | None) -> bool:
        """Store a call as pending and commit; ``False`` if ``call_id`` is already here."""
        async with self._transaction():
            cursor = await self._conn.execute(
                "INSERT OR IGNORE INTO inbox"
                " (call_id, envelope, traceparent, status, received_at)"
                " VALUES (?, ?, ?, 'pending', ?)",
                (str(call_id), envelope, traceparent, self._clock()),
            )
        return cursor.rowcount == 1

    async def pending(self, *, after: int, limit: int) -> list[PendingCall]:
        """Up to ``limit`` pending calls with ``seq`` above ``after``, oldest first (never
        one whose transaction is still open)."""
        async with (
            self._lock,
            self._conn.execute(
                "SELECT seq, call_id, envelope, traceparent FROM inbox"
                " WHERE status = 'pending' AND seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ) as cursor,
        ):
            rows = await cursor.fetchall()
        return [PendingCall(seq, uuid.UUID(call_id), env, tp) for seq, call_id, env, tp in rows]

    async def finish(self, call_ids: Iterable[uuid.UUID]) -> None:
        """Mark calls answered, in one transaction."""
        now = self._clock()
        async with self._transaction():
            await self._conn.executemany(
                "UPDATE inbox SET status = 'done', done_at = ? WHERE call_id = ?",
                [(now, str(call_id)) for call_id in call_ids],
            )

    async def prune(self, *, older_than_s: float) -> int:
        """Delete answered calls finished more than ``older_than_s`` ago; how many."""
        async with self._transaction():
            cursor = await self._conn.execute(
                "DELETE FROM inbox WHERE status = 'done' AND done_at < ?",
                (self._clock() - older_than_s,),
            )
        return cursor.rowcount


@asynccontextmanager
async def open_inbox(
    path: Path, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[SqliteInbox]:
    """Open (creating if needed) the inbox at ``path``.

    ``clock`` is wall-clock seconds: retention must hold across restarts.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        async with conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = row[0] if row else 0
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path} has schema {version}, newer than {SCHEMA_VERSION}")
        await conn.executescript(_SCHEMA)
        await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await conn.commit()
        yield SqliteInbox(conn, clock=clock)
