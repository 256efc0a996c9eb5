"""Webhooks and their delivery outbox on SQLite (the delivery service's file).

One row per (webhook, result event) in ``webhook_deliveries``, unique on that pair: a
result read twice from its topic (a redelivered record, or a result re-published after
a crash) never queues a second delivery. Retries are rows with a ``next_attempt_at``,
not sleeping coroutines, so a restart picks up where the last process stopped.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from pactmesh_contracts.ids import uuid7

from pactmesh_delivery.domain.webhooks import (
    DeliveryState,
    DeliveryView,
    DueDelivery,
    ResultRecord,
    Webhook,
    WebhookCreate,
    matches,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    url         TEXT NOT NULL,
    workflows   TEXT NOT NULL,
    description TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS webhooks_by_tenant ON webhooks (tenant, created_at);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id               TEXT PRIMARY KEY,
    webhook_id       TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    result_event_id  TEXT NOT NULL,
    workflow_id      TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    tenant           TEXT NOT NULL,
    body             BLOB NOT NULL,
    record_key       BLOB,
    record_headers   TEXT NOT NULL,
    source_topic     TEXT NOT NULL,
    source_partition INTEGER NOT NULL,
    source_offset    INTEGER NOT NULL,
    trace_context    TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    last_status      INTEGER,
    last_error       TEXT,
    next_attempt_at  REAL,
    created_at       REAL NOT NULL,
    updated_at       REAL NOT NULL,
    delivered_at     REAL,
    UNIQUE (webhook_id, result_event_id)
);
CREATE INDEX IF NOT EXISTS deliveries_due
    ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_webhook
    ON webhook_deliveries (webhook_id, created_at);
"""

_WEBHOOK_COLUMNS = "id, url, workflows, description, created_at"
_DELIVERY_COLUMNS = (
    "id, result_event_id, workflow_id, workflow, state, attempts, last_status, last_error,"
    " created_at, updated_at, next_attempt_at, delivered_at"
)
_DUE_COLUMNS = (
    "d.id, d.webhook_id, w.url, w.secret, d.result_event_id, d.workflow_id, d.workflow,"
    " d.tenant, d.body, d.record_key, d.record_headers, d.source_topic, d.source_partition,"
    " d.source_offset, d.trace_context, d.attempts, d.last_status, d.last_error"
)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def _webhook(row: sqlite3.Row) -> Webhook:
    return Webhook(
        id=uuid.UUID(row["id"]),
        url=row["url"],
        workflows=json.loads(row["workflows"]),
        description=row["description"],
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
    )


def _delivery(row: sqlite3.Row) -> DeliveryView:
    state = DeliveryState(row["state"])
    return DeliveryView(
        id=uuid.UUID(row["id"]),
        result_event_id=uuid.UUID(row["result_event_id"]),
        workflow_id=uuid.UUID(row["workflow_id"]),
        workflow=row["workflow"],
        state=state,
        attempts=row["attempts"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
        updated_at=datetime.fromtimestamp(row["updated_at"], UTC),
        next_attempt_at=_time(row["next_attempt_at"]) if state is DeliveryState.PENDING else None,
        delivered_at=_time(row["delivered_at"]),
    )


def _due(row: sqlite3.Row, *, counted: bool) -> DueDelivery:
    key = row["record_key"]
    return DueDelivery(
        id=uuid.UUID(row["id"]),
        webhook_id=uuid.UUID(row["webhook_id"]),
        url=row["url"],
        secret=row["secret"],
        result=ResultRecord(
            result_event_id=uuid.UUID(row["result_event_id"]),
            workflow_id=uuid.UUID(row["workflow_id"]),
            workflow=row["workflow"],
            tenant=row["tenant"],
            body=bytes(row["body"]),
            key=None if key is None else bytes(key),
            headers=json.loads(row["record_headers"]),
            source_topic=row["source_topic"],
            source_partition=row["source_partition"],
            source_offset=row["source_offset"],
            trace_context=json.loads(row["trace_context"]),
        ),
        attempts=row["attempts"] + int(counted),
        attempt_counted=counted,
        last_status=row["last_status"],
        last_error=row["last_error"],
    )


class SqliteWebhookStore:
    """``WebhookStore`` and ``Outbox`` on one aiosqlite connection.

    Writes hold a lock from their first statement to their commit: the connection is
    shared by the Kafka handler, the API and the dispatcher, and an interleaved
    ``commit()`` would otherwise publish another coroutine's half-done transaction.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._write = asyncio.Lock()

    # -- webhooks -------------------------------------------------------------------

    async def create_webhook(
        self, *, tenant: str, spec: WebhookCreate, secret: str, now: float
    ) -> Webhook:
        webhook = Webhook(
            id=uuid7(),
            url=str(spec.url),
            workflows=list(spec.workflows),
            description=spec.description,
            created_at=datetime.fromtimestamp(now, UTC),
        )
        async with self._write:
            await self._conn.execute(
                "INSERT INTO webhooks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    str(webhook.id),
                    tenant,
                    webhook.url,
                    json.dumps(webhook.workflows),
                    webhook.description,
                    secret,
                    now,
                ),
            )
            await self._conn.commit()
        return webhook

    async def webhooks(self, *, tenant: str) -> list[Webhook]:
        async with self._conn.execute(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? ORDER BY created_at, id",
            (tenant,),
        ) as cursor:
            return [_webhook(row) for row in await cursor.fetchall()]

    async def webhook(self, *, tenant: str, webhook_id: uuid.UUID) -> Webhook | None:
        async with self._conn.execute(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? AND id = ?",
            (tenant, str(webhook_id)),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _webhook(row)

    async def delete_webhook(self, *, tenant: str, webhook_id: uuid.UUID) -> bool:
        async with self._write:
            cursor = await self._conn.execute(
                "DELETE FROM webhooks WHERE tenant = ? AND id = ?", (tenant, str(webhook_id))
            )
            deleted = cursor.rowcount == 1
            await self._conn.commit()
        return deleted

    async def deliveries(
        self, *, tenant: str, webhook_id: uuid.UUID, limit: int
    ) -> list[DeliveryView] | None:
        if await self.webhook(tenant=tenant, webhook_id=webhook_id) is None:
            return None
        async with self._conn.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?"
            " AND tenant = ?"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (str(webhook_id), tenant, limit),
        ) as cursor:
            return [_delivery(row) for row in await cursor.fetchall()]

    # -- the outbox -----------------------------------------------------------------

    async def enqueue(self, result: ResultRecord, *, now: float) -> int:
        async with self._write:
            async with self._conn.execute(
                "SELECT id, workflows FROM webhooks WHERE tenant = ?", (result.tenant,)
            ) as cursor:
                targets = [
                    row["id"]
                    for row in await cursor.fetchall()
                    if matches(json.loads(row["workflows"]), result.workflow)
                ]
            queued = 0
            for webhook_id in targets:
                cursor = await self._conn.execute(
                    "INSERT INTO webhook_deliveries (id, webhook_id, result_event_id,"
                    " workflow_id, workflow, tenant, body, record_key, record_headers,"
                    " source_topic, source_partition, source_offset, trace_context, state,"
                    " next_attempt_at, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
                    " ON CONFLICT (webhook_id, result_event_id) DO NOTHING",
                    (
                        str(uuid7()),
                        webhook_id,
                        str(result.result_event_id),
                        str(result.workflow_id),
                        result.workflow,
                        result.tenant,
                        result.body,
                        result.key,
                        json.dumps(result.headers),
                        result.source_topic,
                        result.source_partition,
                        result.source_offset,
                        json.dumps(result.trace_context),
                        now,
                        now,
                        now,
                    ),
                )
                queued += cursor.rowcount
            await self._conn.commit()
        return queued

    async def claim_due(
        self, *, now: float, lease_until: float, limit: int, max_attempts: int
    ) -> list[DueDelivery]:
        async with self._write:
            async with self._conn.execute(
                f"SELECT {_DUE_COLUMNS} FROM webhook_deliveries d"
                " JOIN webhooks w ON w.id = d.webhook_id"
                " WHERE d.state = 'pending' AND d.next_attempt_at <= ?"
                " ORDER BY d.next_attempt_at LIMIT ?",
                (now, limit),
            ) as cursor:
                rows = await cursor.fetchall()
            claimed = []
            for row in rows:
                counted = row["attempts"] < max_attempts
                cursor = await self._conn.execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = ?, updated_at = ?,"
                    " attempts = attempts + ? WHERE id = ? AND state = 'pending'"
                    " AND next_attempt_at <= ?",
                    (lease_until, now, int(counted), row["id"], now),
                )
                if cursor.rowcount == 1:
                    claimed.append(_due(row, counted=counted))
            await self._conn.commit()
        return claimed

    async def next_due_at(self) -> float | None:
        async with self._conn.execute(
            "SELECT MIN(next_attempt_at) AS due FROM webhook_deliveries WHERE state = 'pending'"
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None or row["due"] is None else float(row["due"])

    async def mark_delivered(self, delivery_id: uuid.UUID, *, status: int, now: float) -> None:
        await self._update(
            delivery_id,
            "state = 'delivered', last_status = ?, last_error = NULL, delivered_at = ?,"
            " next_attempt_at = NULL, updated_at = ?",
            (status, now, now),
        )

    async def mark_failed(
        self,
        delivery_id: uuid.UUID,
        *,
        status: int | None,
        error: str,
        next_attempt_at: float,
        now: float,
    ) -> None:
        await self._update(
            delivery_id,
            "last_status = ?, last_error = ?, next_attempt_at = ?, updated_at = ?",
            (status, error[:2000], next_attempt_at, now),
        )

    async def mark_dead(self, delivery_id: uuid.UUID, *, now: float) -> None:
        await self._update(
            delivery_id, "state = 'dead', next_attempt_at = NULL, updated_at = ?", (now,)
        )

    async def _update(
        self, delivery_id: uuid.UUID, assignments: str, values: tuple[Any, ...]
    ) -> None:
        # Only a pending delivery changes: one already delivered stays delivered.
        async with self._write:
            await self._conn.execute(
                f"UPDATE webhook_deliveries SET {assignments} WHERE id = ? AND state = 'pending'",
                (*values, str(delivery_id)),
            )
            await self._conn.commit()


@asynccontextmanager
async def open_webhook_store(path: Path) -> AsyncIterator[SqliteWebhookStore]:
    """Open (creating if needed) the webhook tables in the SQLite file at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        # The ledger writes to the same file on its own connection: wait, do not fail.
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA foreign_keys=ON")
        conn.row_factory = sqlite3.Row
        await conn.executescript(SCHEMA)
        await conn.commit()
        yield SqliteWebhookStore(conn)
