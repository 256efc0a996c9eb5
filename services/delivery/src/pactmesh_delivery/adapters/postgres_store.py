"""Webhooks, their delivery outbox and the ledger on Postgres, shared by every delivery
instance.

Several dispatchers work through one outbox: a claim takes due deliveries with ``FOR
UPDATE SKIP LOCKED`` (two instances never take the same row) and leases each one, by
moving its ``next_attempt_at`` past the attempt's timeout, in the same statement. A
delivery is attempted again only when its lease has run out, that is when the instance
holding it stopped (``Dispatcher`` does not start a POST whose lease is about to end).
A result is queued for every matching webhook in one statement.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pactmesh_contracts.ids import uuid7
from pactmesh_kit.stores.postgres import Pool, open_pool
from psycopg.rows import dict_row

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
)

_ENQUEUE = (
    "INSERT INTO webhook_deliveries (id, webhook_id, result_event_id, workflow_id, workflow,"
    " tenant, body, record_key, record_headers, source_topic, source_partition,"
    " source_offset, trace_context, state, next_attempt_at, created_at, updated_at)"
    " SELECT gen_random_uuid(), w.id, %(event)s, %(workflow_id)s, %(workflow)s, %(tenant)s,"
    " %(body)s, %(key)s, %(headers)s, %(topic)s, %(partition)s, %(offset)s, %(trace)s,"
    " 'pending', %(now)s, %(now)s, %(now)s FROM webhooks w WHERE w.tenant = %(tenant)s"
    " AND (w.workflows = '[]' OR w.workflows::jsonb ? %(workflow)s)"
    " ON CONFLICT (webhook_id, result_event_id) DO NOTHING"
)
"""``matches()`` in SQL: a webhook's workflows are a JSON list, empty for every one."""
_CLAIM = (
    "WITH busy AS (SELECT key AS tenant, value::int AS n FROM jsonb_each_text(%(busy)s::jsonb)),"
    f" {pick_due(now='%(now)s', cap='%(cap)s')},"
    " due AS (SELECT id, attempts < %(max)s AS counted FROM webhook_deliveries"
    " WHERE id IN (SELECT id FROM eligible) AND state = 'pending'"
    " AND next_attempt_at <= %(now)s ORDER BY next_attempt_at, id LIMIT %(limit)s"
    " FOR UPDATE SKIP LOCKED)"
    " UPDATE webhook_deliveries d SET next_attempt_at = %(lease)s, updated_at = %(now)s,"
    " attempts = d.attempts + due.counted::int FROM due, webhooks w"
    f" WHERE d.id = due.id AND w.id = d.webhook_id RETURNING {DUE_COLUMNS}, due.counted"
)
_PRUNE = (
    "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries"
    " WHERE state <> 'pending' AND updated_at < %s LIMIT %s FOR UPDATE SKIP LOCKED)"
)
_BATCH = 1000
"""Rows deleted per statement by retention (locked rows are skipped, so instances
pruning at once neither wait for nor repeat each other)."""


class PostgresWebhookStore(DeliveryMarks):
    """``WebhookStore`` and ``Outbox`` on a psycopg connection pool."""

    placeholder = "%s"

    def __init__(self, pool: Pool, box: SecretBox) -> None:
        self._pool = pool
        self._box = box

    async def _rows(self, sql: str, params: Any) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(sql, params)
            return await cursor.fetchall()

    async def _write(self, sql: str, params: Any) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

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
        async with self._pool.connection() as conn, conn.transaction():
            if max_per_tenant is not None:
                # Registrations of one tenant take turns, so two at once cannot both
                # see room for one more.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    (f"webhooks:{tenant}",),
                )
                cursor = await conn.execute(
                    "SELECT COUNT(*) FROM webhooks WHERE tenant = %s", (tenant,)
                )
                row = await cursor.fetchone()
                if row is not None and row[0] >= max_per_tenant:
                    raise WebhookLimitReached(max_per_tenant)
            await conn.execute(
                "INSERT INTO webhooks VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (
                    webhook_id,
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
        return await self._rows(sql, ())

    async def _change(self, sql: str, values: tuple[Any, ...]) -> int:
        return await self._write(sql, values)

    async def webhooks(self, *, tenant: str) -> list[Webhook]:
        rows = await self._rows(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = %s ORDER BY created_at, id",
            (tenant,),
        )
        return [webhook_of(row) for row in rows]

    async def webhook(self, *, tenant: str, webhook_id: uuid.UUID) -> Webhook | None:
        rows = await self._rows(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant = %s AND id = %s",
            (tenant, webhook_id),
        )
        return webhook_of(rows[0]) if rows else None

    async def delete_webhook(self, *, tenant: str, webhook_id: uuid.UUID) -> bool:
        deleted = await self._write(
            "DELETE FROM webhooks WHERE tenant = %s AND id = %s", (tenant, webhook_id)
        )
        return deleted == 1

    async def deliveries(
        self, *, tenant: str, webhook_id: uuid.UUID, limit: int
    ) -> list[DeliveryView] | None:
        if await self.webhook(tenant=tenant, webhook_id=webhook_id) is None:
            return None
        rows = await self._rows(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = %s"
            " AND tenant = %s ORDER BY created_at DESC, id DESC LIMIT %s",
            (webhook_id, tenant, limit),
        )
        return [delivery_of(row) for row in rows]

    # -- the outbox -----------------------------------------------------------------

    async def enqueue(self, result: ResultRecord, *, now: float) -> int:
        return await self._write(
            _ENQUEUE,
            {
                "event": result.result_event_id,
                "workflow_id": result.workflow_id,
                "workflow": result.workflow,
                "tenant": result.tenant,
                "body": result.body,
                "key": result.key,
                "headers": json.dumps(result.headers),
                "topic": result.source_topic,
                "partition": result.source_partition,
                "offset": result.source_offset,
                "trace": json.dumps(result.trace_context),
                "now": now,
            },
        )

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
        params = {
            "busy": json.dumps(dict(busy or {})),
            "cap": NO_CAP if per_tenant is None else per_tenant,
            "max": max_attempts,
            "now": now,
            "limit": limit,
            "lease": lease_until,
        }
        rows = await self._rows(_CLAIM, params)
        return [
            due_of(row, attempts=row["attempts"], counted=row["counted"], box=self._box)
            for row in rows
        ]

    async def next_due_at(self) -> float | None:
        rows = await self._rows(
            "SELECT MIN(next_attempt_at) AS due FROM webhook_deliveries WHERE state = 'pending'",
            (),
        )
        due = rows[0]["due"] if rows else None
        return None if due is None else float(due)

    async def _update(
        self, delivery_id: uuid.UUID, assignments: str, values: tuple[Any, ...]
    ) -> None:
        # Only a pending delivery changes: one already delivered stays delivered.
        await self._write(
            f"UPDATE webhook_deliveries SET {assignments} WHERE id = %s AND state = 'pending'",
            (*values, delivery_id),
        )

    async def prune(self, *, finished_before: float) -> int:
        pruned = 0
        while True:
            gone = await self._write(_PRUNE, (finished_before, _BATCH))
            pruned += gone
            if gone < _BATCH:
                return pruned


class PostgresDeliveryLedger(SettledFromEntry):
    """``Ledger`` on the same pool: several instances prepare into one table, and its
    primary key lets only one of them prepare a workflow's result."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def entry(self, workflow_id: uuid.UUID) -> LedgerEntry | None:
        async with self._pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                f"SELECT {LEDGER_COLUMNS} FROM delivered WHERE workflow_id = %s", (workflow_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else ledger_entry_of(row)

    async def prepare(self, entries: Sequence[LedgerEntry]) -> list[uuid.UUID]:
        columns = list(
            zip(
                *((e.workflow_id, e.topic, e.event_id, e.partition, e.offset) for e in entries),
                strict=True,
            )
        )
        async with self._pool.connection() as conn, conn.transaction() as tx:
            cursor = await conn.execute(
                "INSERT INTO delivered (workflow_id, topic, event_id, at, settled,"
                " result_partition, result_offset)"
                " SELECT w, t, e, now(), false, p, o FROM unnest("
                "%s::uuid[], %s::text[], %s::uuid[], %s::int[], %s::bigint[]) AS u(w, t, e, p, o)"
                " ON CONFLICT (workflow_id) DO NOTHING RETURNING workflow_id",
                [list(c) for c in columns],
            )
            written = {row[0] for row in await cursor.fetchall()}
            taken = [e.workflow_id for e in entries if e.workflow_id not in written]
            # All or none: the caller aborts the Kafka transaction holding them.
            tx.force_rollback = bool(taken)
        return taken

    async def settle(self, workflow_ids: Sequence[uuid.UUID]) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE delivered SET settled = true WHERE workflow_id = ANY(%s)",
                (list(workflow_ids),),
            )

    async def forget(self, entry: LedgerEntry) -> bool:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM delivered WHERE workflow_id = %s AND NOT settled"
                " AND result_partition IS NOT DISTINCT FROM %s"
                " AND result_offset IS NOT DISTINCT FROM %s",
                (entry.workflow_id, entry.partition, entry.offset),
            )
            return cursor.rowcount == 1

    async def prune(self, *, recorded_before: datetime) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute("DELETE FROM delivered WHERE at < %s", (recorded_before,))
            return cursor.rowcount


@asynccontextmanager
async def open_postgres_stores(
    url: str, *, box: SecretBox, pool_size: int = 10
) -> AsyncIterator[tuple[PostgresDeliveryLedger, PostgresWebhookStore]]:
    """Migrate the database at ``url`` (one instance at a time), then open a pool on it;
    webhook secrets sealed with ``box`` (plain-text ones of an earlier release here)."""
    await MIGRATIONS.upgrade(url)
    async with open_pool(url, size=pool_size, name="delivery") as pool:
        webhooks = PostgresWebhookStore(pool, box)
        await webhooks.reseal_secrets()
        yield PostgresDeliveryLedger(pool), webhooks
