"""Rows of the delivery tables to domain objects, for both stores (SQLite hands back ids
as text, Postgres as UUIDs; everything else reads the same)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from pactmesh_delivery.adapters.secrets import SecretBox
from pactmesh_delivery.domain.egress import redact_url
from pactmesh_delivery.domain.results import LedgerEntry
from pactmesh_delivery.domain.webhooks import (
    DeliveryState,
    DeliveryView,
    DueDelivery,
    ResultRecord,
    Webhook,
    WebhookCreate,
)

WEBHOOK_COLUMNS = "id, url, workflows, description, created_at"
DELIVERY_COLUMNS = (
    "id, result_event_id, workflow_id, workflow, state, attempts, last_status, last_error,"
    " created_at, updated_at, next_attempt_at, delivered_at"
)
DUE_COLUMNS = (
    "d.id, d.webhook_id, w.url, w.secret, d.result_event_id, d.workflow_id, d.workflow,"
    " d.tenant, d.body, d.record_key, d.record_headers, d.source_topic, d.source_partition,"
    " d.source_offset, d.trace_context, d.attempts, d.last_status, d.last_error"
)


def pick_due(*, now: str, cap: str) -> str:
    """Two CTEs, after a ``busy (tenant, n)`` one (attempts in flight per tenant):
    ``eligible``, the ids of due deliveries, at most ``cap`` per tenant counting its busy
    ones (its earliest), so that one tenant's backlog never fills every slot. The claim
    takes the earliest of them (on Postgres, skipping those another instance is
    claiming). ``now`` and ``cap`` are the store's placeholders."""
    return (
        "ranked AS (SELECT id, tenant, row_number() OVER"
        " (PARTITION BY tenant ORDER BY next_attempt_at, id) AS n FROM webhook_deliveries"
        f" WHERE state = 'pending' AND next_attempt_at <= {now}),"
        " eligible AS (SELECT r.id FROM ranked r LEFT JOIN busy b ON b.tenant = r.tenant"
        f" WHERE r.n + COALESCE(b.n, 0) <= {cap})"
    )


NO_CAP = 2**31 - 1
"""The per-tenant cap when there is none."""


class Row(Protocol):
    """A row read by column name (``sqlite3.Row``, or psycopg's ``dict_row``)."""

    def __getitem__(self, column: str, /) -> Any:
        """The column's value."""
        ...


def uuid_of(value: Any) -> uuid.UUID:
    """A UUID column's value as a UUID, from either store."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def webhook_of(row: Row) -> Webhook:
    """A webhook from its :data:`WEBHOOK_COLUMNS`."""
    return Webhook(
        id=uuid_of(row["id"]),
        url=redact_url(row["url"]),
        workflows=json.loads(row["workflows"]),
        description=row["description"],
        created_at=datetime.fromtimestamp(row["created_at"], UTC),
    )


def new_webhook(webhook_id: uuid.UUID, spec: WebhookCreate, now: float) -> Webhook:
    """The webhook just registered from ``spec``, as the API shows it."""
    return Webhook(
        id=webhook_id,
        url=redact_url(str(spec.url)),
        workflows=list(spec.workflows),
        description=spec.description,
        created_at=datetime.fromtimestamp(now, UTC),
    )


def delivery_of(row: Row) -> DeliveryView:
    """A delivery as the API lists it, from its :data:`DELIVERY_COLUMNS`."""
    state = DeliveryState(row["state"])
    return DeliveryView(
        id=uuid_of(row["id"]),
        result_event_id=uuid_of(row["result_event_id"]),
        workflow_id=uuid_of(row["workflow_id"]),
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


LEDGER_COLUMNS = "workflow_id, topic, event_id, settled, result_partition, result_offset"


class SettledFromEntry:
    """``Ledger.delivered`` for both stores, read from their ``entry``."""

    async def entry(self, workflow_id: uuid.UUID) -> LedgerEntry | None:
        raise NotImplementedError

    async def delivered(self, workflow_id: uuid.UUID) -> bool:
        found = await self.entry(workflow_id)
        return found is not None and found.settled


def ledger_entry_of(row: Row) -> LedgerEntry:
    """A ledger entry from its :data:`LEDGER_COLUMNS`."""
    return LedgerEntry(
        workflow_id=uuid_of(row["workflow_id"]),
        topic=row["topic"],
        event_id=uuid_of(row["event_id"]),
        partition=row["result_partition"],
        offset=row["result_offset"],
        settled=bool(row["settled"]),
    )


def due_of(row: Row, *, attempts: int, counted: bool, box: SecretBox) -> DueDelivery:
    """A claimed delivery from its :data:`DUE_COLUMNS`, ``attempts`` made with this one,
    its signing secret decrypted with ``box``."""
    key = row["record_key"]
    return DueDelivery(
        id=uuid_of(row["id"]),
        webhook_id=uuid_of(row["webhook_id"]),
        url=row["url"],
        secret=box.open(row["secret"]),
        result=ResultRecord(
            result_event_id=uuid_of(row["result_event_id"]),
            workflow_id=uuid_of(row["workflow_id"]),
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
        attempts=attempts,
        attempt_counted=counted,
        last_status=row["last_status"],
        last_error=row["last_error"],
    )


class DeliveryMarks:
    """What an attempt comes to, and the resealing of secrets, done the same way on
    both stores (they differ only in how a statement spells its parameters:
    ``placeholder``)."""

    placeholder = "?"
    _box: SecretBox

    async def _select(self, sql: str) -> list[Row]:
        """The rows of a query without parameters."""
        raise NotImplementedError

    async def _change(self, sql: str, values: tuple[Any, ...]) -> int:
        """One statement, committed alone; the rows it changed."""
        raise NotImplementedError

    async def reseal_secrets(self) -> int:
        """Encrypt plain-text secrets of an earlier release, and re-encrypt those sealed
        under a key that is no longer the first; how many rows changed. Each row changes
        only from the value it was read with, so instances doing it at once agree."""
        changed = 0
        for row in await self._select("SELECT id, secret FROM webhooks"):
            resealed = self._box.reseal(row["secret"])
            if resealed is not None:
                changed += await self._change(
                    self._set("UPDATE webhooks SET secret = {p} WHERE id = {p} AND secret = {p}"),
                    (resealed, row["id"], row["secret"]),
                )
        return changed

    async def _update(
        self, delivery_id: uuid.UUID, assignments: str, values: tuple[Any, ...]
    ) -> None:
        """``UPDATE ... SET assignments`` of a delivery still pending (one already
        delivered stays delivered)."""
        raise NotImplementedError

    def _set(self, assignments: str) -> str:
        return assignments.format(p=self.placeholder)

    async def mark_delivered(self, delivery_id: uuid.UUID, *, status: int, now: float) -> None:
        """Record a 2xx answer: the delivery is done."""
        await self._update(
            delivery_id,
            self._set(
                "state = 'delivered', last_status = {p}, last_error = NULL, delivered_at = {p},"
                " next_attempt_at = NULL, updated_at = {p}"
            ),
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
        """Record a failed attempt and when to try again."""
        await self._update(
            delivery_id,
            self._set(
                "last_status = {p}, last_error = {p}, next_attempt_at = {p}, updated_at = {p}"
            ),
            (status, error[:2000], next_attempt_at, now),
        )

    async def mark_dead(self, delivery_id: uuid.UUID, *, now: float) -> None:
        """Record that the delivery was dead-lettered."""
        await self._update(
            delivery_id,
            self._set("state = 'dead', next_attempt_at = NULL, updated_at = {p}"),
            (now,),
        )
