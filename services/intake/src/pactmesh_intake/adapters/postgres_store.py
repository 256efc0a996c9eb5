"""The request store on Postgres, shared by every intake instance.

Each write is one statement, so one round trip: data-modifying CTEs write a request, its
first history entry and its outbox event together; a transition inserts its history
entry and moves the status in one statement, the status rule (``next_status``) spelled
in SQL so that concurrent transitions of one request are applied under its row lock.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import Channel, RequestStatus
from pactmesh_kit.stores.outbox import PostgresOutbox
from pactmesh_kit.stores.postgres import Pool, open_pool

from pactmesh_intake.adapters.migrations import MIGRATIONS
from pactmesh_intake.domain.requests import (
    HistoryEntry,
    KeyHolder,
    RequestView,
    ResultView,
    Submission,
    Transition,
)

_TERMINAL = ", ".join(f"'{s.value}'" for s in RequestStatus if s.is_terminal)
_DELIVERED = f"'{RequestStatus.DELIVERED.value}'"
_NEXT_STATUS = (
    f"CASE WHEN r.status = {_DELIVERED} THEN r.status"
    f" WHEN r.status IN ({_TERMINAL}) AND %(status)s <> {_DELIVERED} THEN r.status"
    " ELSE %(status)s END"
)
"""``next_status(current, proposed)`` in SQL: never back out of a terminal status."""

_NEW_REQUEST = (
    "INSERT INTO requests (request_id, tenant, channel, status, created_at, updated_at,"
    " fingerprint) SELECT %(rid)s, %(tenant)s, %(channel)s, 'accepted', %(at)s, %(at)s, %(fp)s"
)
_WRITE_REST = (
    " hist AS (INSERT INTO history (event_id, request_id, status, service, detail, at)"
    " SELECT 'created:' || request_id, request_id, 'accepted', 'intake', %(detail)s, %(at)s"
    " FROM req)"
)
_WRITE_OUTBOX = (
    ", out AS (INSERT INTO request_outbox (event_id, event, publish_after)"
    " SELECT %(eid)s, %(event)s, %(after)s FROM req)"
)
_CREATE = (
    f"WITH req AS ({_NEW_REQUEST} ON CONFLICT (request_id) DO NOTHING RETURNING request_id),"
    f"{_WRITE_REST}{{outbox}} SELECT count(*) FROM req"
)
_CREATE_KEYED = (
    "WITH won AS (INSERT INTO idempotency_keys (tenant, key, request_id, fingerprint,"
    " created_at) VALUES (%(tenant)s, %(key)s, %(rid)s, %(fp)s, %(at)s)"
    " ON CONFLICT (tenant, key) DO UPDATE SET request_id = EXCLUDED.request_id,"
    " fingerprint = EXCLUDED.fingerprint, created_at = EXCLUDED.created_at"
    " WHERE idempotency_keys.created_at < %(expired)s RETURNING request_id),"
    f" req AS ({_NEW_REQUEST} FROM won ON CONFLICT (request_id) DO NOTHING"
    f" RETURNING request_id),{_WRITE_REST}{{outbox}}"
    " SELECT request_id, %(fp)s::text FROM won UNION ALL SELECT request_id, fingerprint"
    " FROM idempotency_keys WHERE tenant = %(tenant)s AND key = %(key)s"
    " AND NOT EXISTS (SELECT 1 FROM won)"
)
_RECORD = (
    "WITH hist AS (INSERT INTO history (event_id, request_id, status, service, detail, at)"
    " SELECT %(eid)s, request_id, %(status)s, %(service)s, %(detail)s, %(at)s FROM requests"
    " WHERE request_id = %(rid)s ON CONFLICT (event_id) DO NOTHING RETURNING request_id)"
    f" UPDATE requests r SET status = {_NEXT_STATUS}, workflow = COALESCE(%(workflow)s,"
    " r.workflow), updated_at = GREATEST(r.updated_at, %(at)s)"
    " FROM hist WHERE r.request_id = hist.request_id"
)
_PRUNE_REQUESTS = (
    "WITH gone AS (DELETE FROM requests WHERE request_id IN (SELECT request_id FROM requests"
    " WHERE updated_at < %(before)s LIMIT %(batch)s FOR UPDATE SKIP LOCKED)"
    " RETURNING request_id),"
    " h AS (DELETE FROM history WHERE request_id IN (SELECT request_id FROM gone)),"
    " r AS (DELETE FROM results WHERE request_id IN (SELECT request_id FROM gone))"
    " SELECT count(*) FROM gone"
)
_PRUNE_KEYS = (
    "DELETE FROM idempotency_keys WHERE (tenant, key) IN (SELECT tenant, key"
    " FROM idempotency_keys WHERE created_at < %(before)s LIMIT %(batch)s"
    " FOR UPDATE SKIP LOCKED)"
)
_BATCH = 1000
"""Rows deleted per statement by retention: short transactions, and locked rows are
skipped, so instances pruning at once neither wait for nor repeat each other."""


class PostgresRequestStore:
    """``RequestStore`` on a psycopg connection pool."""

    def __init__(self, pool: Pool, *, lease_s: float) -> None:
        self._pool = pool
        self._lease_s = lease_s
        self.outbox = PostgresOutbox(pool, "request_outbox")

    async def create(
        self,
        *,
        request_id: uuid.UUID,
        tenant: str,
        channel: Channel,
        at: datetime,
        fingerprint: str | None = None,
        event: Envelope[Any] | None = None,
    ) -> bool:
        params = self._new(request_id, tenant, channel, at, fingerprint, event)
        row = await self._fetchone(_CREATE.format(outbox=_outbox(event)), params)
        return bool(row and row[0])

    async def create_keyed(
        self,
        *,
        request_id: uuid.UUID,
        tenant: str,
        key: str,
        fingerprint: str,
        at: datetime,
        expired_before: datetime,
        event: Envelope[Any] | None = None,
    ) -> KeyHolder:
        params = self._new(request_id, tenant, Channel.HTTP, at, fingerprint, event)
        params.update(key=key, expired=expired_before)
        row = await self._fetchone(_CREATE_KEYED.format(outbox=_outbox(event)), params)
        if row is None:
            # The holder committed after this statement's snapshot was taken, so the
            # statement could not see it: it is there now.
            row = await self._fetchone(
                "SELECT request_id, fingerprint FROM idempotency_keys"
                " WHERE tenant = %(tenant)s AND key = %(key)s",
                params,
            )
        assert row is not None, "a key that refused a claim is held"
        return KeyHolder(row[0], row[1])

    def _new(
        self,
        request_id: uuid.UUID,
        tenant: str,
        channel: Channel,
        at: datetime,
        fingerprint: str | None,
        event: Envelope[Any] | None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "rid": request_id,
            "tenant": tenant,
            "channel": channel.value,
            "at": at,
            "fp": fingerprint,
            "detail": f"received over {channel.value}",
        }
        if event is not None:
            params.update(
                eid=event.event_id,
                event=event.model_dump_json(),
                after=at.timestamp() + self._lease_s,
            )
        return params

    async def submission(self, request_id: uuid.UUID) -> Submission | None:
        row = await self._fetchone(
            "SELECT tenant, channel, status, fingerprint FROM requests WHERE request_id = %s",
            (request_id,),
        )
        if row is None:
            return None
        tenant, channel, status, digest = row
        return Submission(tenant, Channel(channel), RequestStatus(status), digest)

    async def record_result(self, *, request_id: uuid.UUID, result: ResultView) -> bool:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO results SELECT request_id, %s FROM requests WHERE request_id = %s"
                " ON CONFLICT DO NOTHING",
                (result.model_dump_json(), request_id),
            )
            return cursor.rowcount == 1

    async def result(self, request_id: uuid.UUID) -> ResultView | None:
        row = await self._fetchone(
            "SELECT result FROM results WHERE request_id = %s", (request_id,)
        )
        return None if row is None else ResultView.model_validate_json(row[0])

    async def status(self, request_id: uuid.UUID) -> RequestStatus | None:
        row = await self._fetchone(
            "SELECT status FROM requests WHERE request_id = %s", (request_id,)
        )
        return None if row is None else RequestStatus(row[0])

    async def record(self, transition: Transition) -> bool:
        params = {
            "eid": str(transition.event_id),
            "rid": transition.request_id,
            "status": transition.status.value,
            "service": transition.service,
            "detail": transition.detail,
            "workflow": transition.workflow,
            "at": transition.at,
        }
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_RECORD, params)
            return cursor.rowcount == 1

    async def get(self, request_id: uuid.UUID) -> RequestView | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT tenant, channel, status, workflow, created_at, updated_at, result"
                " FROM requests LEFT JOIN results USING (request_id) WHERE request_id = %s",
                (request_id,),
            )
            row = await cursor.fetchone()
            if row is None:
                return None
            cursor = await conn.execute(
                "SELECT status, service, detail, at FROM history WHERE request_id = %s"
                " ORDER BY at, seq",
                (request_id,),
            )
            entries = await cursor.fetchall()
        tenant, channel, status, workflow, created, updated, result = row
        return RequestView(
            request_id=request_id,
            tenant=tenant,
            channel=Channel(channel),
            status=RequestStatus(status),
            workflow=workflow,
            created_at=created,
            updated_at=updated,
            history=[
                HistoryEntry(status=RequestStatus(s), service=svc, detail=d, at=a)
                for s, svc, d, a in entries
            ],
            result=None if result is None else ResultView.model_validate_json(result),
        )

    async def prune(self, *, updated_before: datetime, keys_before: datetime) -> dict[str, int]:
        return {
            "requests": await self._prune(_PRUNE_REQUESTS, updated_before, counted=True),
            "idempotency_keys": await self._prune(_PRUNE_KEYS, keys_before, counted=False),
        }

    async def _prune(self, sql: str, before: datetime, *, counted: bool) -> int:
        total = 0
        while True:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(sql, {"before": before, "batch": _BATCH})
                row = await cursor.fetchone() if counted else None
                gone = int(row[0]) if row else max(cursor.rowcount, 0)
            total += gone
            if gone < _BATCH:
                return total

    async def _fetchone(self, sql: str, params: Any) -> Any:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchone()


def _outbox(event: Envelope[Any] | None) -> str:
    return "" if event is None else _WRITE_OUTBOX


@asynccontextmanager
async def open_postgres_store(
    url: str, *, pool_size: int = 10, lease_s: float = 30.0
) -> AsyncIterator[PostgresRequestStore]:
    """Migrate the database at ``url`` (one instance at a time), then open a pool on it."""
    await MIGRATIONS.upgrade(url)
    async with open_pool(url, size=pool_size, name="intake") as pool:
        yield PostgresRequestStore(pool, lease_s=lease_s)
