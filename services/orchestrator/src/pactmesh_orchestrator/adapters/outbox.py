"""Which checkpoints' outgoing events have been published (the outbox marker).

After a graph step the engine publishes the events the new checkpoint implies, then
marks the checkpoint here. A redelivered input event finds the mark and publishes
nothing; a crash between publishing and marking re-publishes once, and consumers
deduplicate (by call id, by workflow id). Without the mark, a crash after the
checkpoint but before publishing would leave the workflow waiting forever.
"""

from __future__ import annotations

from typing import Any

from pactmesh_orchestrator.adapters.sqlite_store import UPSERT_WAKEUP, SqliteOutbox
from pactmesh_orchestrator.domain.timers import Due, Wake

# The SQLite outbox shares the checkpoints' file and their group commits, so it lives
# beside them in sqlite_store; both implementations can be imported from here.
__all__ = ["PostgresOutbox", "PostgresWakeups", "SqliteOutbox"]


class PostgresOutbox:
    """Outbox marks in Postgres, on the checkpointer's connection pool."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def published(self, thread_id: str, checkpoint_id: str) -> bool:
        """Whether the events of this checkpoint were already published."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM outbox_marks WHERE thread_id = %s AND checkpoint_id = %s",
                (thread_id, checkpoint_id),
            )
            return await cursor.fetchone() is not None

    async def mark(self, thread_id: str, checkpoint_id: str) -> None:
        """Record that the events of this checkpoint are published."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO outbox_marks VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (thread_id, checkpoint_id),
            )


class PostgresWakeups:
    """Wake-up rows in Postgres, claimed with ``FOR UPDATE SKIP LOCKED``: instances
    sweeping at once each take rows the others did not."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def set(self, thread_id: str, due_at: float, wake: Wake, pause: str = "") -> None:
        """Create or replace the run's row."""
        async with self._pool.connection() as conn:
            await conn.execute(UPSERT_WAKEUP, (thread_id, due_at, wake.value, pause))

    async def clear(self, thread_id: str) -> None:
        """Remove the run's row, if any."""
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM wakeups WHERE thread_id = %s", (thread_id,))

    async def claim(self, now: float, lease_until: float, limit: int) -> list[Due]:
        """Up to ``limit`` rows due at ``now``, each moved to ``lease_until``."""
        query = (
            "UPDATE wakeups SET due_at = %s WHERE thread_id IN (SELECT thread_id FROM wakeups"
            " WHERE due_at <= %s ORDER BY due_at LIMIT %s FOR UPDATE SKIP LOCKED)"
            " RETURNING thread_id, wake, pause"
        )
        async with self._pool.connection() as conn:
            cursor = await conn.execute(query, (lease_until, now, limit))
            rows = await cursor.fetchall()
        return [Due(row["thread_id"], Wake(row["wake"]), row["pause"]) for row in rows]

    async def purge(self, thread_id: str) -> bool:
        """Delete an expired run's outbox marks and row (False if it is not expired)."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM wakeups WHERE thread_id = %s AND wake = %s",
                (thread_id, Wake.EXPIRE.value),
            )
            if not cursor.rowcount:
                return False
            await conn.execute("DELETE FROM outbox_marks WHERE thread_id = %s", (thread_id,))
        return True
