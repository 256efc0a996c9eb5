"""Where workflow state lives: SQLite files by default, Postgres when a URL is set.

Both the checkpointer and the outbox marks live in the same store, so any instance
sharing it can resume any workflow and knows what was already published.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from pactmesh_orchestrator.adapters.sqlite_store import open_sqlite_store
from pactmesh_orchestrator.domain.engine import Outbox
from pactmesh_orchestrator.settings import Settings

_SETUP_LOCK = 0x7061_6374_6D65_7368 & 0x7FFF_FFFF_FFFF_FFFF
"""Advisory lock key serialising schema set-up ("pactmesh" in ASCII, as a bigint)."""


@dataclass(frozen=True)
class Persistence:
    """A checkpointer and an outbox over one store."""

    checkpointer: BaseCheckpointSaver[Any]
    outbox: Outbox
    kind: str


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


async def _acquire(conn: Any, deadline_s: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (_SETUP_LOCK,))
        row = await cursor.fetchone()
        if row and row["locked"]:
            return
        if loop.time() > deadline:
            raise TimeoutError("another orchestrator held the schema set-up lock too long")
        await asyncio.sleep(0.2)


@asynccontextmanager
async def _postgres(url: str, pool_size: int) -> AsyncIterator[Persistence]:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(
        url, min_size=1, max_size=pool_size, kwargs=kwargs, open=False
    ) as pool:
        checkpointer = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
        # Migrations are idempotent but not concurrent-safe: two instances starting
        # together race on CREATE TABLE. A session advisory lock makes them take turns.
        # It is polled, not awaited in pg_advisory_lock: the migrations run CREATE INDEX
        # CONCURRENTLY, which waits for every open statement, including a blocked
        # pg_advisory_lock of the other instance (a deadlock Postgres cannot see).
        async with pool.connection() as lock:
            await _acquire(lock)
            try:
                await checkpointer.setup()
                async with pool.connection() as conn:
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS pactmesh_outbox ("
                        " thread_id TEXT NOT NULL, checkpoint_id TEXT NOT NULL,"
                        " PRIMARY KEY (thread_id, checkpoint_id))"
                    )
            finally:
                await lock.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))
        yield Persistence(checkpointer, PostgresOutbox(pool), "postgres")


@asynccontextmanager
async def _sqlite(settings: Settings) -> AsyncIterator[Persistence]:
    # Outbox marks live in the checkpoints' file (before: orchestrator-outbox.sqlite3),
    # so a checkpoint and its mark share group commits. Marks left in an old outbox
    # file are not read: a redelivered event re-publishes once, and consumers dedupe.
    path = settings.data_dir / "orchestrator-checkpoints.sqlite3"
    async with open_sqlite_store(path) as (checkpointer, outbox):
        yield Persistence(checkpointer, outbox, "sqlite")


def open_persistence(settings: Settings) -> Any:
    """Postgres when ``postgres_url`` is set, else SQLite files in the data dir."""
    if settings.postgres_url:
        return _postgres(settings.postgres_url.get_secret_value(), settings.postgres_pool_size)
    return _sqlite(settings)
