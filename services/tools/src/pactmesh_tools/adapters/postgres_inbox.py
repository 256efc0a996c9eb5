"""The inbox of tool calls on Postgres, shared by every tools instance.

Any instance's handler records a call; any instance's dispatcher may claim it. A claim
takes the oldest pending calls nobody holds a lease on, with ``FOR UPDATE SKIP LOCKED``
(two dispatchers never take the same call), and leases them in the same statement. The
dispatcher renews the leases of the calls it runs, so a call is run again elsewhere
only when the instance running it stopped (or lost the database) for a whole lease; the
idempotency key keeps its side effect single, and consumers deduplicate results by call
id. Each method is one statement.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from pactmesh_kit.stores.postgres import Pool, open_pool

from pactmesh_tools.adapters.migrations import MIGRATIONS
from pactmesh_tools.domain.inbox import PendingCall

_CLAIM = (
    "UPDATE inbox SET lease_until = %(until)s WHERE seq IN (SELECT seq FROM inbox"
    " WHERE status = 'pending' AND (lease_until IS NULL OR lease_until <= %(now)s)"
    " ORDER BY seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
    " RETURNING seq, call_id, envelope, traceparent"
)
_PRUNE = (
    "DELETE FROM inbox WHERE seq IN (SELECT seq FROM inbox WHERE status = 'done'"
    " AND done_at < %s LIMIT %s FOR UPDATE SKIP LOCKED)"
)
_BATCH = 5000
"""Rows deleted per statement by retention (locked rows are skipped, so instances
pruning at once neither wait for nor repeat each other)."""


class PostgresInbox:
    """``Inbox`` on a psycopg connection pool."""

    def __init__(self, pool: Pool, *, clock: Callable[[], float]) -> None:
        self._pool = pool
        self._clock = clock

    async def _execute(self, sql: str, params: Sequence[Any]) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

    async def record(self, *, call_id: uuid.UUID, envelope: str, traceparent: str | None) -> bool:
        """Store a call as pending (committed on return); ``False`` if already here."""
        recorded = await self._execute(
            "INSERT INTO inbox (call_id, envelope, traceparent, status, received_at)"
            " VALUES (%s, %s, %s, 'pending', %s) ON CONFLICT (call_id) DO NOTHING",
            (call_id, envelope, traceparent, self._clock()),
        )
        return recorded == 1

    async def claim(self, *, limit: int, lease_s: float) -> list[PendingCall]:
        """Up to ``limit`` pending calls nobody holds a lease on, oldest first, leased."""
        now = self._clock()
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                _CLAIM, {"until": now + lease_s, "now": now, "limit": limit}
            )
            rows = await cursor.fetchall()
        calls = [PendingCall(seq, cid, env, tp) for seq, cid, env, tp in rows]
        return sorted(calls, key=lambda call: call.seq)

    async def renew(self, call_ids: Iterable[uuid.UUID], *, lease_s: float) -> None:
        """Lease these pending calls for ``lease_s`` from now (0: give them back)."""
        ids = list(call_ids)
        if ids:
            await self._execute(
                "UPDATE inbox SET lease_until = %s WHERE call_id = ANY(%s) AND status = 'pending'",
                (self._clock() + lease_s, ids),
            )

    async def finish(self, call_ids: Iterable[uuid.UUID]) -> None:
        """Mark calls answered, in one statement."""
        ids = list(call_ids)
        if ids:
            await self._execute(
                "UPDATE inbox SET status = 'done', done_at = %s, lease_until = NULL"
                " WHERE call_id = ANY(%s)",
                (self._clock(), ids),
            )

    async def prune(self, *, older_than_s: float) -> int:
        """Delete answered calls finished more than ``older_than_s`` ago; how many."""
        pruned, before = 0, self._clock() - older_than_s
        while (gone := await self._execute(_PRUNE, (before, _BATCH))) == _BATCH:
            pruned += gone
        return pruned + gone


@asynccontextmanager
async def open_postgres_inbox(
    url: str, *, pool_size: int = 10, clock: Callable[[], float] = time.time
) -> AsyncIterator[PostgresInbox]:
    """Migrate the database at ``url`` (one instance at a time), then open a pool on it."""
    await MIGRATIONS.upgrade(url)
    async with open_pool(url, size=pool_size, name="tools") as pool:
        yield PostgresInbox(pool, clock=clock)
