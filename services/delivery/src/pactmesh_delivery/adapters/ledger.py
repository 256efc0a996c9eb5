"""Which workflows' results were delivered (so a redelivered completion is not)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite


class SqliteDeliveryLedger:
    """Delivered results, by workflow id."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def delivered(self, workflow_id: uuid.UUID) -> bool:
        """Whether this workflow's result was already published."""
        async with self._conn.execute(
            "SELECT 1 FROM delivered WHERE workflow_id = ?", (str(workflow_id),)
        ) as cursor:
            return await cursor.fetchone() is not None

    async def record(self, workflow_id: uuid.UUID, *, topic: str, event_id: uuid.UUID) -> None:
        """Remember that the result went out on ``topic`` as ``event_id``."""
        await self._conn.execute(
            "INSERT OR IGNORE INTO delivered VALUES (?, ?, ?, ?)",
            (str(workflow_id), topic, str(event_id), datetime.now(UTC).isoformat()),
        )
        await self._conn.commit()


@asynccontextmanager
async def open_ledger(path: Path) -> AsyncIterator[SqliteDeliveryLedger]:
    """Open (creating if needed) the ledger at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS delivered (workflow_id TEXT PRIMARY KEY,"
            " topic TEXT NOT NULL, event_id TEXT NOT NULL, at TEXT NOT NULL)"
        )
        await conn.commit()
        yield SqliteDeliveryLedger(conn)
