"""Webhooks, their delivery outbox and the delivery ledger in SQLite (the delivery
service's file, one instance).

One row per (webhook, result event) in ``webhook_deliveries``, unique on that pair: a
result read twice from its topic (a redelivered record, or a result re-published after
a crash) never queues a second delivery. Retries are rows with a ``next_attempt_at``,
not sleeping coroutines, so a restart picks up where the last process stopped.

One autocommit connection for both stores; the writes of several statements hold the
connection's lock from ``BEGIN IMMEDIATE`` to ``COMMIT``: the Kafka handlers, the API
and the dispatcher share it, and no statement of one may fall into another's
transaction. The schema is Alembic's (``migrations``), applied when the file opens.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from pactmesh_contracts.ids import uuid7
from pactmesh_kit.stores.sqlite import connect, transaction

from pactmesh_delivery.adapters.migrations import MIGRATIONS
from pactmesh_delivery.adapters.rows import (
    DELIVERY_COLUMNS,
    DUE_COLUMNS,
    LEDGER_COLUMNS,
    NO_CAP,
    WEBHOOK_COLUMNS,
    DeliveryMarks,
    SettledFromEntry,
    delivery_of,
    due_of,
    ledger_entry_of,
    new_webhook,
    pick_due,
    webhook_of,
)
from pactmesh_delivery.adapters.secrets import SecretBox
from pactmesh_delivery.domain.errors import WebhookLimitReached
from pactmesh_delivery.domain.results import LedgerEntry
from pactmesh_delivery.domain.webhooks import (
    DeliveryView,
    DueDelivery,
    ResultRecord,
    Webhook,
    WebhookCreate,
    matches,
)

_BATCH = 1000
"""Rows deleted per statement by retention."""


class _Connection:
    """The file's one connection, and the lock its transactions hold."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()

    def transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        return transaction(self.conn, self.lock)

    async def write(self, sql: str, params: tuple[Any, ...]) -> int:
        """One statement, committed alone; the rows it changed."""
        async with self.lock:
            cursor = await self.conn.execute(sql, params)
            return cursor.rowcount

    async def read(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        """One query's rows, outside any transaction, in one hop to the connection's
        thread (a cursor's execute, fetch and close are three)."""
        async with self.lock:
            return list(await self.conn.execute_fetchall(sql, params))


class SqliteWebhookStore(DeliveryMarks):
    """``WebhookStore`` and ``Outbox`` on the file's connection."""

    def __init__(self, connection: _Connection, box: SecretBox) -> None:
        self._db = connection
        self._conn = connection.conn
        self._box = box

    # -- webhooks -------------------------------------------------------------------

    async def create_webhook(
        self,
        *,
        tenant: str,
        spec: WebhookCreate,
        secret: str,
        now: float,
        max_per_tenant: int | None = None,
    ) -> Webhook:
        webhook_id = uuid7()
        async with self._db.transaction() as conn:  # the count and the insert at once
            if max_per_tenant is not None:
                async with conn.execute(
                    "SELECT COUNT(*) AS n FROM webhooks WHERE tenant = ?", (tenant,)
                ) as cursor:
                    row = await cursor.fetchone()
                if row is not None and row["n"] >= max_per_tenant:
                    raise WebhookLimitReached(max_per_tenant)
            await conn.execute(
                "INSERT INTO webhooks VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    str(webhook_id),
                    tenant,
                    str(spec.url),
                    json.dumps(list(spec.workflows)),
                    spec.description,
                    self._box.seal(secret),
                    now,
                ),
            )
        return new_webhook(webhook_id, spec, now)

    async def _select(self, sql: str) -> list[Any]:
        async with self._conn.execute(sql) as cursor:
            return list(await cursor.fetchall())

    async def _change(self, sql: str, values: tuple[Any, ...]) -> int:
        return await self._db.write(sql, values)

    async def webhooks(self, *, tenant: str) -> list[Webhook]:
        async with self._conn.execute(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? ORDER BY created_at, id",
            (tenant,),
        ) as cursor:
            return [webhook_of(row) for row in await cursor.fetchall()]

    async def webhook(self, *, tenant: str, webhook_id: uuid.UUID) -> Webhook | None:
        async with self._conn.execute(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = ? AND id = ?",
            (tenant, str(webhook_id)),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else webhook_of(row)

    async def delete_webhook(self, *, tenant: str, webhook_id: uuid.UUID) -> bool:
        deleted = await self._db.write(
            "DELETE FROM webhooks WHERE tenant = ? AND id = ?", (tenant, str(webhook_id))
        )
        return deleted == 1

    async def deliveries(
        self, *, tenant: str, webhook_id: uuid.UUID, limit: int
    ) -> list[DeliveryView] | None:
        if await self.webhook(tenant=tenant, webhook_id=webhook_id) is None:
            return None
        async with self._conn.execute(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?"
            " AND tenant = ?"
            " ORDER BY created_at DESC, id DESC LIMIT ?",
            (str(webhook_id), tenant, limit),
        ) as cursor:
            return [delivery_of(row) for row in await cursor.fetchall()]

    # -- the outbox -----------------------------------------------------------------

    async def enqueue(self, result: ResultRecord, *, now: float) -> int:
        # Most results have no webhook to go to: one read answers for them. A write
        # transaction for each cost 0.2 ms of CPU (bench/micro.py). A webhook added after
        # the read does not get the result, as it did not when added after the transaction.
        if not await self._db.read(
            "SELECT 1 FROM webhooks WHERE tenant = ? LIMIT 1", (result.tenant,)
        ):
            return 0
        async with self._db.transaction() as conn:
            async with conn.execute(
                "SELECT id, workflows FROM webhooks WHERE tenant = ?", (result.tenant,)
            ) as cursor:
                targets = [
                    row["id"]
                    for row in await cursor.fetchall()
                    if matches(json.loads(row["workflows"]), result.workflow)
                ]
            queued = 0
            for webhook_id in targets:
                cursor = await conn.execute(
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
        return queued

    async def claim_due(
        self,
        *,
        now: float,
        lease_until: float,
        limit: int,
        max_attempts: int,
        per_tenant: int | None = None,
        busy: Mapping[str, int] | None = None,
    ) -> list[DueDelivery]:
        cap = NO_CAP if per_tenant is None else per_tenant
        async with self._db.transaction() as conn:
            async with conn.execute(
                "WITH busy (tenant, n) AS (SELECT key, value FROM json_each(?)),"
                f" {pick_due(now='?', cap='?')}"
                f" SELECT {DUE_COLUMNS} FROM webhook_deliveries d"
                " JOIN webhooks w ON w.id = d.webhook_id"
                " WHERE d.id IN (SELECT id FROM eligible)"
                " ORDER BY d.next_attempt_at, d.id LIMIT ?",
                (json.dumps(dict(busy or {})), now, cap, limit),
            ) as cursor:
                rows = await cursor.fetchall()
            for row in rows:
                counted = row["attempts"] < max_attempts
                await conn.execute(
                    "UPDATE webhook_deliveries SET next_attempt_at = ?, updated_at = ?,"
                    " attempts = attempts + ? WHERE id = ?",
                    (lease_until, now, int(counted), row["id"]),
                )
        return [
            due_of(
                row,
                attempts=row["attempts"] + int(row["attempts"] < max_attempts),
                counted=row["attempts"] < max_attempts,
                box=self._box,
            )
            for row in rows
        ]

    async def next_due_at(self) -> float | None:
        async with self._conn.execute(
            "SELECT MIN(next_attempt_at) AS due FROM webhook_deliveries WHERE state = 'pending'"
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None or row["due"] is None else float(row["due"])

    async def _update(
        self, delivery_id: uuid.UUID, assignments: str, values: tuple[Any, ...]
    ) -> None:
        # Only a pending delivery changes: one already delivered stays delivered.
        await self._db.write(
            f"UPDATE webhook_deliveries SET {assignments} WHERE id = ? AND state = 'pending'",
            (*values, str(delivery_id)),
        )

    async def prune(self, *, finished_before: float) -> int:
        pruned = 0
        while True:
            gone = await self._db.write(
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
                " WHERE state <> 'pending' AND updated_at < ? LIMIT ?)",
                (finished_before, _BATCH),
            )
            pruned += gone
            if gone < _BATCH:
                return pruned


class SqliteDeliveryLedger(SettledFromEntry):
    """``Ledger``: results by workflow id, on the file's connection."""

    def __init__(self, connection: _Connection) -> None:
        self._db = connection

    async def entry(self, workflow_id: uuid.UUID) -> LedgerEntry | None:
        rows = await self._db.read(
            f"SELECT {LEDGER_COLUMNS} FROM delivered WHERE workflow_id = ?", (str(workflow_id),)
        )
        return ledger_entry_of(rows[0]) if rows else None

    async def prepare(self, entries: Sequence[LedgerEntry]) -> list[uuid.UUID]:
        ids = [str(e.workflow_id) for e in entries]
        at = _utc_text(datetime.now(UTC))
        async with self._db.transaction() as conn:
            marks = ",".join("?" * len(ids))
            async with conn.execute(
                f"SELECT workflow_id FROM delivered WHERE workflow_id IN ({marks})", ids
            ) as cursor:
                taken = [uuid.UUID(row[0]) for row in await cursor.fetchall()]
            if not taken:
                await conn.executemany(
                    "INSERT INTO delivered (workflow_id, topic, event_id, at, settled,"
                    " result_partition, result_offset) VALUES (?, ?, ?, ?, 0, ?, ?)",
                    [
                        (str(e.workflow_id), e.topic, str(e.event_id), at, e.partition, e.offset)
                        for e in entries
                    ],
                )
        return taken

    async def settle(self, workflow_ids: Sequence[uuid.UUID]) -> None:
        async with self._db.transaction() as conn:
            await conn.executemany(
                "UPDATE delivered SET settled = 1 WHERE workflow_id = ?",
                [(str(w),) for w in workflow_ids],
            )

    async def forget(self, entry: LedgerEntry) -> bool:
        return (
            await self._db.write(
                "DELETE FROM delivered WHERE workflow_id = ? AND NOT settled"
                " AND result_partition IS ? AND result_offset IS ?",
                (str(entry.workflow_id), entry.partition, entry.offset),
            )
            == 1
        )

    async def prune(self, *, recorded_before: datetime) -> int:
        return await self._db.write(
            "DELETE FROM delivered WHERE at < ?", (_utc_text(recorded_before),)
        )


def _utc_text(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


@asynccontextmanager
async def open_sqlite_stores(
    path: Path, *, box: SecretBox
) -> AsyncIterator[tuple[SqliteDeliveryLedger, SqliteWebhookStore]]:
    """The ledger and the webhook store in the SQLite file at ``path``, created or
    migrated first; webhook secrets sealed with ``box`` (plain-text ones of an earlier
    release are sealed here)."""
    await MIGRATIONS.upgrade(path)
    async with connect(path, "busy_timeout=5000", "foreign_keys=ON") as conn:
        conn.row_factory = sqlite3.Row
        connection = _Connection(conn)
        webhooks = SqliteWebhookStore(connection, box)
        await webhooks.reseal_secrets()
        yield SqliteDeliveryLedger(connection), webhooks
