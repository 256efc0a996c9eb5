"""The audit store (``AuditStore``) on SQLite (one intake instance) or Postgres (every
instance shares it, so the daily counts are the same wherever a request arrives).

The schema is the audit store's own Alembic revisions (``migrations.audit``), for both
databases, applied when the store opens: two tables, written only by intake's consumer
of the audit topic.

* ``audit_events``: every event whole (its envelope as JSON), keyed by event id (a
  redelivered event is kept once), found by request in time order.
* ``usage_daily``: tokens, cost and calls per tenant, UTC day, workflow and model,
  incremented in the transaction that keeps a model call's event, so a redelivery never
  counts twice.

SQLite runs in WAL with ``synchronous=NORMAL``, as intake's request store: a commit is
not an fsync, so keeping an event costs no disk wait; a power cut (not a crash) may lose
the last events' rows after their offsets were committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import AuditModelCalled
from pactmesh_contracts.topics import AUDIT
from pactmesh_contracts.usage import Usage
from pactmesh_kit.stores.postgres import open_pool
from pactmesh_kit.stores.sqlite import GroupCommitter, connect

from pactmesh_intake.adapters.migrations.audit import MIGRATIONS
from pactmesh_intake.domain.timeline import AuditStore, UsageRow

AUDIT_FILE = "intake-audit.sqlite3"

_ADD_USAGE = """
INSERT INTO usage_daily VALUES ({p}, {p}, {p}, {p}, 1, {p}, {p}, {p})
ON CONFLICT (tenant, day, workflow, model) DO UPDATE SET
    calls = usage_daily.calls + 1,
    input_tokens = usage_daily.input_tokens + excluded.input_tokens,
    output_tokens = usage_daily.output_tokens + excluded.output_tokens,
    cost = usage_daily.cost + excluded.cost
"""
_SPENT = (
    "SELECT COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0),"
    " COALESCE(SUM(cost), 0) FROM usage_daily WHERE tenant = {p} AND day = {p}"
)
_USAGE = (
    "SELECT day, workflow, model, calls, input_tokens, output_tokens, cost FROM usage_daily"
    " WHERE tenant = {p} AND day >= {p} ORDER BY day, workflow, model"
)


def _usage_row(event: Envelope[Any]) -> tuple[Any, ...] | None:
    """The ``usage_daily`` increment of a model call's event (None for other events)."""
    payload = event.payload
    if not isinstance(payload, AuditModelCalled):
        return None
    spent = payload.usage
    day = event.occurred_at.astimezone(UTC).date()
    return (
        event.tenant,
        day,
        payload.workflow or "",
        payload.model,
        spent.input_tokens,
        spent.output_tokens,
        spent.cost,
    )


def _decode(body: str) -> Envelope[Any]:
    event: Envelope[Any] = AUDIT.adapter.validate_json(body)
    return event


def _row_of(values: tuple[Any, ...]) -> UsageRow:
    day, workflow, model, calls, input_tokens, output_tokens, cost = values
    return UsageRow(
        day=day if isinstance(day, date) else date.fromisoformat(day),
        workflow=workflow or None,
        model=model,
        calls=calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=round(float(cost), 9),
    )


class SqliteAuditStore:
    """``AuditStore`` on one aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()  # one transaction at a time on the connection
        self._grouped = GroupCommitter(conn, self._lock)

    async def record(self, event: Envelope[Any]) -> bool:
        row = (
            str(event.event_id),
            str(event.workflow_id),
            event.tenant,
            event.type,
            event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
            event.model_dump_json(),
        )
        usage = _usage_row(event)

        def keep(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO audit_events VALUES (?, ?, ?, ?, ?, ?)", row
            )
            added = cursor.rowcount == 1
            if added and usage is not None:
                conn.execute(_ADD_USAGE.format(p="?"), (usage[0], usage[1].isoformat(), *usage[2:]))
            return added

        return await self._grouped.run(keep)

    async def events(self, request_id: uuid.UUID) -> list[Envelope[Any]]:
        async with self._conn.execute(
            "SELECT body FROM audit_events WHERE request_id = ? ORDER BY occurred_at, event_id",
            (str(request_id),),
        ) as cursor:
            return [_decode(body) for (body,) in await cursor.fetchall()]

    async def spent(self, tenant: str, day: date) -> Usage:
        async with self._conn.execute(_SPENT.format(p="?"), (tenant, day.isoformat())) as cur:
            row = await cur.fetchone()
        assert row is not None  # an aggregate always answers one row
        return Usage(input_tokens=row[0], output_tokens=row[1], cost=round(row[2], 9))

    async def usage(self, tenant: str, since: date) -> list[UsageRow]:
        async with self._conn.execute(_USAGE.format(p="?"), (tenant, since.isoformat())) as cur:
            return [_row_of(tuple(row)) for row in await cur.fetchall()]

    async def prune(self, before: datetime) -> int:
        async with self._lock:
            cursor = await self._conn.execute(
                "DELETE FROM audit_events WHERE occurred_at < ?",
                (before.astimezone(UTC).isoformat(timespec="microseconds"),),
            )
            await self._conn.execute(
                "DELETE FROM usage_daily WHERE day < ?", (before.date().isoformat(),)
            )
            await self._conn.commit()
        return cursor.rowcount


class PostgresAuditStore:
    """``AuditStore`` on a psycopg connection pool (autocommit; one transaction per
    recorded event)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool

    async def record(self, event: Envelope[Any]) -> bool:
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "INSERT INTO audit_events VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (event_id) DO NOTHING",
                (
                    event.event_id,
                    event.workflow_id,
                    event.tenant,
                    event.type,
                    event.occurred_at,
                    event.model_dump_json(),
                ),
            )
            added = bool(cursor.rowcount == 1)
            if added and (row := _usage_row(event)) is not None:
                await conn.execute(_ADD_USAGE.format(p="%s"), row)
        return added

    async def events(self, request_id: uuid.UUID) -> list[Envelope[Any]]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT body FROM audit_events WHERE request_id = %s"
                " ORDER BY occurred_at, event_id",
                (request_id,),
            )
            return [_decode(body) for (body,) in await cursor.fetchall()]

    async def spent(self, tenant: str, day: date) -> Usage:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_SPENT.format(p="%s"), (tenant, day))
            row = await cursor.fetchone()
        return Usage(input_tokens=row[0], output_tokens=row[1], cost=round(float(row[2]), 9))

    async def usage(self, tenant: str, since: date) -> list[UsageRow]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_USAGE.format(p="%s"), (tenant, since))
            return [_row_of(tuple(row)) for row in await cursor.fetchall()]

    async def prune(self, before: datetime) -> int:
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                "DELETE FROM audit_events WHERE occurred_at < %s", (before,)
            )
            await conn.execute("DELETE FROM usage_daily WHERE day < %s", (before.date(),))
        return int(cursor.rowcount)


@asynccontextmanager
async def open_audit_store(
    *, data_dir: Path, postgres_url: str | None, pool_size: int = 5
) -> AsyncIterator[AuditStore]:
    """The audit store: on Postgres when ``postgres_url`` is set, else a SQLite file in
    ``data_dir``; migrated first (one instance at a time on Postgres)."""
    if postgres_url:
        await MIGRATIONS.upgrade(postgres_url)
        async with open_pool(postgres_url, size=pool_size, name="intake-audit") as pool:
            yield PostgresAuditStore(pool)
        return
    await MIGRATIONS.upgrade(data_dir / AUDIT_FILE)
    async with connect(data_dir / AUDIT_FILE, "synchronous=NORMAL") as conn:
        yield SqliteAuditStore(conn)
