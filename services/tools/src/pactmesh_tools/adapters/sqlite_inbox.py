"""The inbox of tool calls in SQLite (``tools-inbox.sqlite3`` in the data directory,
one instance).

One connection, WAL journal, ``synchronous=FULL``: a call recorded here survives a
crash of the process and of the machine, which is what lets the Kafka consumer commit
the request's offset as soon as ``record`` returns. Writes are one INSERT per request
(the requests recorded together share one commit, ``GroupCommitter``), one UPDATE per
page of calls claimed, and one transaction per batch of answered calls.
The schema is Alembic's (``migrations``), applied when the file opens; leases left by a
previous process are cleared then (the file has one instance), so its calls run at once.

Done rows are kept for a retention window so that a redelivered request is recognised
and ignored; a redelivery arriving after its row was pruned runs the call again (the
idempotency key keeps its side effect single) and answers again (consumers deduplicate
by call id).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
from pactmesh_kit.stores.sqlite import GroupCommitter, connect, transaction

from pactmesh_tools.adapters.migrations import MIGRATIONS
from pactmesh_tools.domain.inbox import PendingCall


class SqliteInbox:
    """Tool calls by call id, pending until their result is published.

    The handler and the dispatcher share the connection: every statement runs under one
    lock, so none falls into the other's transaction.
    """

    def __init__(self, conn: aiosqlite.Connection, *, clock: Callable[[], float]) -> None:
        self._conn = conn
        self._clock = clock
        self._lock = asyncio.Lock()
        self._grouped = GroupCommitter(conn, self._lock)

    async def record(self, *, call_id: uuid.UUID, envelope: str, traceparent: str | None) -> bool:
        """Store a call as pending and commit; ``False`` if ``call_id`` is already here."""
        row = (str(call_id), envelope, traceparent, self._clock())

        def insert(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO inbox (call_id, envelope, traceparent, status,"
                " received_at) VALUES (?, ?, ?, 'pending', ?)",
                row,
            )
            return cursor.rowcount == 1

        return await self._grouped.run(insert)  # calls arriving together: one fsync

    async def claim(self, *, limit: int, lease_s: float) -> list[PendingCall]:
        """Up to ``limit`` pending calls nobody holds a lease on, oldest first, leased."""
        now = self._clock()
        async with (
            self._lock,
            self._conn.execute(
                "UPDATE inbox SET lease_until = ? WHERE seq IN (SELECT seq FROM inbox"
                " WHERE status = 'pending' AND (lease_until IS NULL OR lease_until <= ?)"
                " ORDER BY seq LIMIT ?) RETURNING seq, call_id, envelope, traceparent",
                (now + lease_s, now, limit),
            ) as cursor,
        ):
            rows = await cursor.fetchall()
        calls = [PendingCall(seq, uuid.UUID(cid), env, tp) for seq, cid, env, tp in rows]
        return sorted(calls, key=lambda call: call.seq)

    async def renew(self, call_ids: Iterable[uuid.UUID], *, lease_s: float) -> None:
        """Lease these pending calls for ``lease_s`` from now (0: give them back)."""
        until = self._clock() + lease_s
        await self._in_transaction(
            "UPDATE inbox SET lease_until = ? WHERE call_id = ? AND status = 'pending'",
            [(until, str(call_id)) for call_id in call_ids],
        )

    async def finish(self, call_ids: Iterable[uuid.UUID]) -> None:
        """Mark calls answered, in one transaction."""
        now = self._clock()
        await self._in_transaction(
            "UPDATE inbox SET status = 'done', done_at = ?, lease_until = NULL WHERE call_id = ?",
            [(now, str(call_id)) for call_id in call_ids],
        )

    async def prune(self, *, older_than_s: float) -> int:
        """Delete answered calls finished more than ``older_than_s`` ago; how many."""
        async with self._lock:
            cursor = await self._conn.execute(
                "DELETE FROM inbox WHERE status = 'done' AND done_at < ?",
                (self._clock() - older_than_s,),
            )
        return cursor.rowcount

    async def _in_transaction(self, sql: str, rows: list[tuple[object, ...]]) -> None:
        """``sql`` for each of ``rows``, committed once (one fsync)."""
        if not rows:
            return
        async with transaction(self._conn, self._lock):
            await self._conn.executemany(sql, rows)


@asynccontextmanager
async def open_sqlite_inbox(
    path: Path, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[SqliteInbox]:
    """Open the inbox at ``path``, creating or migrating its file first.

    ``clock`` is wall-clock seconds: retention must hold across restarts.
    """
    await MIGRATIONS.upgrade(path)
    async with connect(path, "synchronous=FULL") as conn:
        await conn.execute("UPDATE inbox SET lease_until = NULL WHERE lease_until IS NOT NULL")
        yield SqliteInbox(conn, clock=clock)
