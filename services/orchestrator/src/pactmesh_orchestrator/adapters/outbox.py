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

from pactmesh_orchestrator.adapters.sqlite_store import SqliteOutbox, open_sqlite_store

__all__ = ["SqliteOutbox", "open_outbox"]


@asynccontextmanager
async def open_outbox(path: Path) -> AsyncIterator[SqliteOutbox]:
    """Open (creating if needed) the outbox in the SQLite file at ``path``; it shares
    the file, and the group commits, with the checkpoints stored there."""
    async with open_sqlite_store(path) as (_checkpointer, outbox):
        yield outbox
