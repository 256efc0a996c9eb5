"""Where workflow state lives: SQLite files by default, Postgres when a URL is set.

Both the checkpointer and the outbox marks live in the same store, so any instance
sharing it can resume any workflow and knows what was already published.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.base import BaseCheckpointSaver

from pactmesh_orchestrator.adapters.migrations import MIGRATIONS
from pactmesh_orchestrator.adapters.outbox import PostgresOutbox, PostgresWakeups
from pactmesh_orchestrator.adapters.sqlite_store import SqliteWakeups, open_sqlite_store
from pactmesh_orchestrator.domain.engine import Outbox
from pactmesh_orchestrator.domain.timers import Wakeups
from pactmesh_orchestrator.settings import Settings

if TYPE_CHECKING:
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

_SETUP_LOCK = 0x7061_6374_6D65_7368 & 0x7FFF_FFFF_FFFF_FFFF
"""Advisory lock key serialising schema set-up ("pactmesh" in ASCII, as a bigint)."""


@dataclass(frozen=True)
class Persistence:
    """A checkpointer, an outbox and the runs' wake-ups over one store."""

    checkpointer: BaseCheckpointSaver[Any]
    outbox: Outbox
    kind: str
    wakeups: Wakeups


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
    from psycopg.rows import dict_row
    from psycopg_pool import AsyncConnectionPool

    await MIGRATIONS.upgrade(url)  # the marks table; the checkpoints' tables are LangGraph's
    kwargs = {"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row}
    async with AsyncConnectionPool(
        url, min_size=1, max_size=pool_size, kwargs=kwargs, open=False
    ) as pool:
        async with pool.connection() as conn:
            await _set_up(conn)
        yield Persistence(
            _checkpointer(pool), PostgresOutbox(pool), "postgres", PostgresWakeups(pool)
        )


async def _set_up(conn: Any) -> None:
    """Create or migrate LangGraph's checkpoint tables, one instance at a time, all on
    ``conn``: the connection that holds the lock. (Taking a second connection from the pool for the
    migrations hung start-up until the pool timed out when the pool had one connection.)

    Migrations are idempotent but not concurrent-safe: two instances starting together
    race on CREATE TABLE. A session advisory lock makes them take turns. It is polled,
    not awaited in pg_advisory_lock: the migrations run CREATE INDEX CONCURRENTLY, which
    waits for every open statement, including a blocked pg_advisory_lock of the other
    instance (a deadlock Postgres cannot see)."""
    await _acquire(conn)
    try:
        await _checkpointer(conn).setup()
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_SETUP_LOCK,))


def _checkpointer(conn: Any) -> AsyncPostgresSaver:
    """LangGraph's Postgres checkpointer over a pool or one connection."""
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    return AsyncPostgresSaver(conn)


@asynccontextmanager
async def _sqlite(settings: Settings) -> AsyncIterator[Persistence]:
    # Outbox marks live in the checkpoints' file (before: orchestrator-outbox.sqlite3),
    # so a checkpoint and its mark share group commits. Marks left in an old outbox
    # file are not read: a redelivered event re-publishes once, and consumers dedupe.
    path = settings.data_dir / "orchestrator-checkpoints.sqlite3"
    async with open_sqlite_store(path) as (checkpointer, outbox):
        yield Persistence(checkpointer, outbox, "sqlite", SqliteWakeups(checkpointer.committer))


def open_persistence(settings: Settings) -> AbstractAsyncContextManager[Persistence]:
    """Postgres when ``postgres_url`` is set, else SQLite files in the data dir."""
    if settings.postgres_url:
        return _postgres(settings.postgres_url.get_secret_value(), settings.postgres_pool_size)
    return _sqlite(settings)
