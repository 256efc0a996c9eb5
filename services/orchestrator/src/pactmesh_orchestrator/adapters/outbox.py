"""Which checkpoints' outgoing events have been published (the outbox marker).

After a graph step the engine publishes the events the new checkpoint implies, then
marks the checkpoint here. A redelivered input event finds the mark and publishes
nothing; a crash between publishing and marking re-publishes once, and consumers
deduplicate (by call id, by workflow id). Without the mark, a crash after the
checkpoint but before publishing would leave the workflow waiting forever.
"""

from __future__ import annotations

from typing import Any

from pactmesh_orchestrator.adapters.sqlite_store import SqliteOutbox

# The SQLite outbox shares the checkpoints' file and their group commits, so it lives
# beside them in sqlite_store; both implementations can be imported from here.
__all__ = ["PostgresOutbox", "SqliteOutbox"]


class PostgresOutbox:
    """Outbox marks in Postgres, on the checkpointer's connection pool."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def published(self, thread_id: str, checkpoint_id: str) -> bool:
        """Whether the events of this checkpoint were already published."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT 1 FROM pactmesh_outbox WHERE thread_id = %s AND checkpoint_id = %s",
                (thread_id, checkpoint_id),
            )
            return await cursor.fetchone() is not None

    async def mark(self, thread_id: str, checkpoint_id: str) -> None:
        """Record that the events of this checkpoint are published."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO pactmesh_outbox VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (thread_id, checkpoint_id),
            )
