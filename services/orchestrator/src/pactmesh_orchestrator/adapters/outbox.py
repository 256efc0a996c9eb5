"""Which checkpoints' outgoing events have been published (the outbox marker).

After a graph step the engine publishes the events the new checkpoint implies, then
marks the checkpoint here. A redelivered input event finds the mark and publishes
nothing; a crash between publishing and marking re-publishes once, and consumers
deduplicate (by call id, by workflow id). Without the mark, a crash after the
checkpoint but before publishing would leave the workflow waiting forever.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite


class SqliteOutbox:
    """Marks of published checkpoints, in SQLite."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def published(self, thread_id: str, checkpoint_id: str) -> bool:
        """Whether the events of this checkpoint were already published."""
        async with self._conn.execute(
            "SELECT 1 FROM published WHERE thread_id = ? AND checkpoint_id = ?",
            (thread_id, checkpoint_id),
        ) as cursor:
            return await cursor.fetchone() is not None

    async def mark(self, thread_id: str, checkpoint_id: str) -> None:
        """Record that the events of this checkpoint are published."""
        await self._conn.execute(
            "INSERT OR IGNORE INTO published VALUES (?, ?)", (thread_id, checkpoint_id)
        )
        await self._conn.commit()


@asynccontextmanager
async def open_outbox(path: Path) -> AsyncIterator[SqliteOutbox]:
    """Open (creating if needed) the outbox at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS published ("
            " thread_id TEXT NOT NULL, checkpoint_id TEXT NOT NULL,"
            " PRIMARY KEY (thread_id, checkpoint_id))"
        )
        await conn.commit()
        yield SqliteOutbox(conn)
