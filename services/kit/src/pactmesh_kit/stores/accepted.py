"""Where a service keeps the requests the mesh accepted (``pactmesh_kit.provenance``):
Postgres when ``PACTMESH_POSTGRES_URL`` is set, one table every instance of tools and
delivery shares (an instance may be handed an event of a request another instance
read), else the SQLite file ``accepted-requests.sqlite3`` in the data dir (one instance
per data dir, which the service's instance lock holds). The schema is the kit's own
Alembic revisions (``accepted_migrations``), applied when the store opens.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import aiosqlite
from pactmesh_contracts.envelope import Principal

from pactmesh_kit.stores.accepted_migrations import MIGRATIONS
from pactmesh_kit.stores.postgres import Pool, open_pool
from pactmesh_kit.stores.settings import StoreSettings
from pactmesh_kit.stores.sqlite import GroupCommitter, connect

FILE = "accepted-requests.sqlite3"
"""The SQLite file under a service's data directory."""
_POOL_SIZE = 4
"""Connections to Postgres at most: one short statement per event checked or recorded."""


class AcceptedStore(Protocol):
    """The accepted requests, by workflow id."""

    async def insert(
        self, workflow_id: uuid.UUID, *, tenant: str, principal: Principal, at: float
    ) -> None:
        """Keep a request (one recorded already is kept as first recorded)."""
        ...

    async def find(self, workflow_id: uuid.UUID) -> tuple[str, Principal] | None:
        """The tenant and principal of ``workflow_id``'s request, if kept."""
        ...

    async def delete_before(self, instant: float) -> int:
        """Forget requests accepted before ``instant``; how many."""
        ...


class SqliteAccepted:
    """``AcceptedStore`` on one autocommit aiosqlite connection: requests recorded while
    others are being written share their commit (``GroupCommitter``: one hop to the
    connection's thread and one fsync per group, not one per accepted request)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._grouped = GroupCommitter(conn, self._lock)

    async def insert(
        self, workflow_id: uuid.UUID, *, tenant: str, principal: Principal, at: float
    ) -> None:
        row = (str(workflow_id), tenant, principal.model_dump_json(), at)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT OR IGNORE INTO accepted_requests VALUES (?, ?, ?, ?)", row)

        await self._grouped.run(insert)

    async def find(self, workflow_id: uuid.UUID) -> tuple[str, Principal] | None:
        # One hop to the connection's thread (a cursor's execute, fetch and close are
        # three): looked up for every tool call and every result (bench/micro.py).
        rows = await self._conn.execute_fetchall(
            "SELECT tenant, principal FROM accepted_requests WHERE workflow_id = ?",
            (str(workflow_id),),
        )
        return next(((t, Principal.model_validate_json(p)) for t, p in rows), None)

    async def delete_before(self, instant: float) -> int:
        async with self._lock:  # never inside a group's transaction
            cursor = await self._conn.execute(
                "DELETE FROM accepted_requests WHERE accepted_at < ?", (instant,)
            )
        return cursor.rowcount


class PostgresAccepted:
    """``AcceptedStore`` on a psycopg pool, shared by every instance."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def insert(
        self, workflow_id: uuid.UUID, *, tenant: str, principal: Principal, at: float
    ) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO accepted_requests VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (workflow_id) DO NOTHING",
                (workflow_id, tenant, principal.model_dump_json(), at),
            )

    async def find(self, workflow_id: uuid.UUID) -> tuple[str, Principal] | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT tenant, principal FROM accepted_requests WHERE workflow_id = %s",
                (workflow_id,),
            )
            row = await cursor.fetchone()
        return None if row is None else (row[0], Principal.model_validate_json(row[1]))

    async def delete_before(self, instant: float) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM accepted_requests WHERE accepted_at < %s", (instant,)
            )
            return cursor.rowcount


@asynccontextmanager
async def open_accepted(settings: StoreSettings) -> AsyncIterator[AcceptedStore]:
    """The store ``settings`` select, migrated (one instance at a time) and open until exit."""
    if (url := settings.postgres) is not None:
        await MIGRATIONS.upgrade(url)
        async with open_pool(url, size=_POOL_SIZE, name="accepted-requests") as pool:
            yield PostgresAccepted(pool)
        return
    path = settings.data_dir / FILE
    await MIGRATIONS.upgrade(path)
    async with connect(path) as conn:
        yield SqliteAccepted(conn)
