"""The connection pool every Postgres store runs on (psycopg 3, async)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]
"""A pool of connections whose rows are tuples."""


@asynccontextmanager
async def open_pool(url: str, *, size: int, name: str) -> AsyncIterator[Pool]:
    """A pool of at most ``size`` autocommit connections to ``url``, open until exit.

    Sessions run in UTC, so instants read back as UTC whatever the server's zone.
    Statements a store runs often are prepared by psycopg after a few executions.
    """
    pool: Pool = AsyncConnectionPool(
        url,
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True, "options": "-c TimeZone=UTC"},
        open=False,
        name=name,
    )
    async with pool:
        yield pool
