"""One suite for both stores of the delivery service, SQLite and Postgres, each opened as
the service opens it (``open_stores(settings)``): webhooks, their delivery outbox, the
ledger, retention; then a file written before the store used Alembic."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pactmesh_delivery.adapters.store import SQLITE_FILE, Stores, open_stores
from pactmesh_delivery.domain.results import Ledger, LedgerEntry
from pactmesh_delivery.domain.webhooks import (
    DeliveryState,
    ResultRecord,
    Webhook,
    WebhookCreate,
    WebhookOutbox,
)
from pactmesh_delivery.settings import Settings
from pactmesh_harness.pytest_plugin import StoreBackend

NOW = 1_800_000_000.0


def result(**changes: Any) -> ResultRecord:
    fields: dict[str, Any] = {
        "result_event_id": uuid.uuid4(),
        "workflow_id": uuid.uuid4(),
        "workflow": "refund",
        "tenant": "acme",
        "body": b'{"type": "workflow.result.v1"}',
        "key": b"k",
        "headers": {"event-type": "workflow.result.v1"},
        "source_topic": "pactmesh.results.refund",
        "source_partition": 2,
        "source_offset": 41,
        "trace_context": {},
    }
    return ResultRecord(**{**fields, **changes})


@pytest.fixture
def settings(store_backend: StoreBackend) -> Settings:
    """The delivery service's settings selecting the stores under test."""
    return Settings(**store_backend.settings())


@pytest.fixture
async def stores(settings: Settings) -> AsyncIterator[Stores]:
    async with open_stores(settings) as opened:
        yield opened


@pytest.fixture
def store(stores: Stores) -> WebhookOutbox:
    return stores.webhooks


@pytest.fixture
def ledger(stores: Stores) -> Ledger:
    return stores.ledger


async def register(
    store: WebhookOutbox, tenant: str = "acme", workflows: tuple[str, ...] = ()
) -> Webhook:
    spec = WebhookCreate.model_validate(
        {"url": "https://hooks.example/in", "workflows": list(workflows)}
    )
    return await store.create_webhook(tenant=tenant, spec=spec, secret="s3cret", now=NOW)


async def claim(store: WebhookOutbox, now: float = NOW, max_attempts: int = 3) -> list[Any]:
    return await store.claim_due(now=now, lease_until=now + 15, limit=10, max_attempts=max_attempts)


async def test_a_result_read_twice_queues_one_delivery_per_webhook(
    store: WebhookOutbox,
) -> None:
    first, second = await register(store), await register(store)
    done = result()

    assert await store.enqueue(done, now=NOW) == 2
    assert await store.enqueue(done, now=NOW + 1) == 0
    assert await store.enqueue(result(result_event_id=done.result_event_id), now=NOW + 2) == 0

    for webhook in (first, second):
        deliveries = await store.deliveries(tenant="acme", webhook_id=webhook.id, limit=10)
        assert deliveries is not None
        assert [d.result_event_id for d in deliveries] == [done.result_event_id]


async def test_the_unique_key_is_enforced_by_the_database(
    settings: Settings, store_backend: StoreBackend
) -> None:
    async with open_stores(settings) as stores:
        webhook = await register(stores.webhooks)
        done = result()
        await stores.webhooks.enqueue(done, now=NOW)
    copy = (
        "INSERT INTO webhook_deliveries SELECT {p}, webhook_id, result_event_id, workflow_id,"
        " workflow, tenant, body, record_key, record_headers, source_topic,"
        " source_partition, source_offset, trace_context, state, attempts, last_status,"
        " last_error, next_attempt_at, created_at, updated_at, delivered_at"
        " FROM webhook_deliveries WHERE webhook_id = {p}"
    )
    if store_backend.postgres_url is None:
        path = settings.data_dir / SQLITE_FILE
        with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            conn.execute(copy.format(p="?"), (str(uuid.uuid4()), str(webhook.id)))
    else:
        with (
            psycopg.connect(store_backend.postgres_url) as pg,
            pytest.raises(psycopg.errors.UniqueViolation),
        ):
            pg.execute(copy.format(p="%s"), (uuid.uuid4(), webhook.id))


async def test_only_the_results_tenant_and_subscribed_workflows_are_queued(
    store: WebhookOutbox,
) -> None:
    everything = await register(store)
    refunds = await register(store, workflows=("refund",))
    procurement = await register(store, workflows=("procurement",))
    other_tenant = await register(store, tenant="globex")

    assert await store.enqueue(result(), now=NOW) == 2

    counts = {}
    for webhook, tenant in (
        (everything, "acme"),
        (refunds, "acme"),
        (procurement, "acme"),
        (other_tenant, "globex"),
    ):
        deliveries = await store.deliveries(tenant=tenant, webhook_id=webhook.id, limit=10)
        assert deliveries is not None
        counts[webhook.id] = len(deliveries)
    assert counts == {everything.id: 1, refunds.id: 1, procurement.id: 0, other_tenant.id: 0}


async def test_a_claim_counts_an_attempt_and_hides_the_delivery_for_its_lease(
    store: WebhookOutbox,
) -> None:
    await register(store)
    await store.enqueue(result(), now=NOW)

    [due] = await claim(store)
    assert (due.attempts, due.attempt_counted, due.secret) == (1, True, "s3cret")
    assert due.result.body == result().body
    assert await claim(store, now=NOW + 14) == []

    [again] = await claim(store, now=NOW + 15)  # the lease ran out: a crash mid-attempt
    assert (again.id, again.attempts) == (due.id, 2)


async def test_after_the_last_attempt_a_claim_is_for_dead_lettering_only(
    store: WebhookOutbox,
) -> None:
    await register(store)
    await store.enqueue(result(), now=NOW)
    for attempt in (1, 2):
        [due] = await claim(store, max_attempts=2)
        assert (due.attempts, due.attempt_counted) == (attempt, True)
        await store.mark_failed(due.id, status=500, error="HTTP 500", next_attempt_at=NOW, now=NOW)

    [due] = await claim(store, max_attempts=2)
    assert (due.attempts, due.attempt_counted, due.last_status) == (2, False, 500)


async def test_failed_attempts_wait_for_their_next_attempt_time(
    store: WebhookOutbox,
) -> None:
    webhook = await register(store)
    await store.enqueue(result(), now=NOW)
    [due] = await claim(store)
    await store.mark_failed(
        due.id, status=None, error="ConnectError", next_attempt_at=NOW + 7, now=NOW
    )

    assert await store.next_due_at() == NOW + 7
    assert await claim(store, now=NOW + 6.9) == []
    [view] = await store.deliveries(tenant="acme", webhook_id=webhook.id, limit=10) or []
    assert (view.state, view.attempts, view.last_status, view.last_error) == (
        DeliveryState.PENDING,
        1,
        None,
        "ConnectError",
    )
    assert view.next_attempt_at is not None
    assert view.next_attempt_at.timestamp() == NOW + 7
    assert len(await claim(store, now=NOW + 7)) == 1


async def test_a_delivered_delivery_is_never_claimed_or_changed_again(
    store: WebhookOutbox,
) -> None:
    webhook = await register(store)
    await store.enqueue(result(), now=NOW)
    [due] = await claim(store)
    await store.mark_delivered(due.id, status=204, now=NOW + 1)

    await store.mark_failed(due.id, status=500, error="late", next_attempt_at=NOW, now=NOW + 2)
    await store.mark_dead(due.id, now=NOW + 3)

    assert await claim(store, now=NOW + 100) == []
    assert await store.next_due_at() is None
    [view] = await store.deliveries(tenant="acme", webhook_id=webhook.id, limit=10) or []
    assert (view.state, view.attempts, view.last_status, view.next_attempt_at) == (
        DeliveryState.DELIVERED,
        1,
        204,
        None,
    )
    assert view.delivered_at is not None
    assert view.delivered_at.timestamp() == NOW + 1


async def test_pending_deliveries_survive_a_restart(settings: Settings) -> None:
    async with open_stores(settings) as stores:
        await register(stores.webhooks)
        await stores.webhooks.enqueue(done := result(), now=NOW)
        [due] = await claim(stores.webhooks)  # the process dies mid-attempt
    async with open_stores(settings) as reopened:
        [resumed] = await claim(reopened.webhooks, now=NOW + 15)
    assert (resumed.id, resumed.attempts, resumed.result) == (due.id, 2, done)


async def test_deleting_a_webhook_drops_its_pending_deliveries(
    store: WebhookOutbox,
) -> None:
    webhook = await register(store)
    await store.enqueue(result(), now=NOW)

    assert not await store.delete_webhook(tenant="globex", webhook_id=webhook.id)
    assert await store.delete_webhook(tenant="acme", webhook_id=webhook.id)

    assert await claim(store) == []
    assert await store.deliveries(tenant="acme", webhook_id=webhook.id, limit=10) is None
    assert not await store.delete_webhook(tenant="acme", webhook_id=webhook.id)


async def test_webhooks_are_read_only_within_their_tenant(store: WebhookOutbox) -> None:
    acme = await register(store)
    globex = await register(store, tenant="globex")

    assert [w.id for w in await store.webhooks(tenant="acme")] == [acme.id]
    assert await store.webhook(tenant="acme", webhook_id=acme.id) == acme
    assert await store.webhook(tenant="acme", webhook_id=globex.id) is None
    assert await store.deliveries(tenant="acme", webhook_id=globex.id, limit=10) is None


async def test_dispatchers_of_several_instances_never_claim_one_delivery_twice(
    settings: Settings,
) -> None:
    """Two instances claiming at once (on Postgres: two pools, FOR UPDATE SKIP LOCKED)."""
    async with open_stores(settings) as one, open_stores(settings) as two:
        await register(one.webhooks)
        queued = [result() for _ in range(30)]
        for done in queued:
            await one.webhooks.enqueue(done, now=NOW)
        claims = await asyncio.gather(
            *(claim(stores.webhooks) for _ in range(4) for stores in (one, two))
        )
    claimed = [due.result.result_event_id for batch in claims for due in batch]
    assert sorted(claimed) == sorted(done.result_event_id for done in queued)


async def test_retention_prunes_finished_deliveries_only(store: WebhookOutbox) -> None:
    webhook = await register(store)
    for _ in range(3):
        await store.enqueue(result(), now=NOW)
    delivered, dead, pending = await claim(store)
    await store.mark_delivered(delivered.id, status=204, now=NOW + 1)
    await store.mark_dead(dead.id, now=NOW + 2)

    assert await store.prune(finished_before=NOW + 1.5) == 1
    assert await store.prune(finished_before=NOW + 100) == 1

    [left] = await store.deliveries(tenant="acme", webhook_id=webhook.id, limit=10) or []
    assert (left.id, left.state) == (pending.id, DeliveryState.PENDING)


# -- the ledger ---------------------------------------------------------------------------


def entry(workflow_id: uuid.UUID | None = None, **changes: Any) -> LedgerEntry:
    fields: dict[str, Any] = {
        "workflow_id": workflow_id or uuid.uuid4(),
        "topic": "results.refund",
        "event_id": uuid.uuid4(),
        "partition": 3,
        "offset": 41,
    }
    return LedgerEntry(**{**fields, **changes})


async def delivered(ledger: Ledger, *entries: LedgerEntry) -> None:
    """Prepare and settle ``entries``, as a committed transaction leaves them."""
    assert await ledger.prepare(entries) == []
    await ledger.settle([e.workflow_id for e in entries])


async def test_a_prepared_entry_is_not_delivered_until_settled(ledger: Ledger) -> None:
    prepared, other = entry(), entry()
    assert await ledger.entry(prepared.workflow_id) is None

    assert await ledger.prepare([prepared, other]) == []

    assert await ledger.entry(prepared.workflow_id) == prepared
    assert not await ledger.delivered(prepared.workflow_id)
    await ledger.settle([prepared.workflow_id])
    assert await ledger.delivered(prepared.workflow_id)
    assert not await ledger.delivered(other.workflow_id)
    found = await ledger.entry(prepared.workflow_id)
    assert found is not None
    assert found.settled
    assert (found.partition, found.offset) == (3, 41)


async def test_prepare_writes_all_or_none_and_names_the_taken(ledger: Ledger) -> None:
    """Another transaction's entry makes the whole batch fail, nothing written."""
    taken = entry()
    await delivered(ledger, taken)
    fresh = entry()

    again = entry(taken.workflow_id, offset=99)
    assert await ledger.prepare([fresh, again]) == [taken.workflow_id]

    assert await ledger.entry(fresh.workflow_id) is None
    found = await ledger.entry(taken.workflow_id)
    assert found is not None
    assert found.offset == 41


async def test_forget_deletes_only_an_unsettled_entry_at_the_same_position(
    ledger: Ledger,
) -> None:
    aborted = entry()
    assert await ledger.prepare([aborted]) == []

    assert not await ledger.forget(entry(aborted.workflow_id, offset=42))
    assert await ledger.forget(aborted)
    assert await ledger.entry(aborted.workflow_id) is None

    settled = entry()
    await delivered(ledger, settled)
    assert not await ledger.forget(settled)
    assert await ledger.delivered(settled.workflow_id)


async def test_ledger_survives_reopening(settings: Settings) -> None:
    kept = entry(topic="results.procurement")
    async with open_stores(settings) as first:
        await delivered(first.ledger, kept)
    async with open_stores(settings) as second:
        assert await second.ledger.delivered(kept.workflow_id)


async def test_retention_forgets_old_ledger_entries(ledger: Ledger) -> None:
    old = entry()
    await delivered(ledger, old)
    now = datetime.now(UTC)

    assert await ledger.prune(recorded_before=now - timedelta(minutes=1)) == 0
    assert await ledger.prune(recorded_before=now + timedelta(minutes=1)) == 1
    assert not await ledger.delivered(old.workflow_id)


# -- a file written before Alembic ----------------------------------------------------------

PREVIOUS_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (workflow_id TEXT PRIMARY KEY,
 topic TEXT NOT NULL, event_id TEXT NOT NULL, at TEXT NOT NULL);
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
"""The tables the previous release created at start-up (ledger, then webhooks)."""


async def test_a_data_dir_of_the_previous_release_opens_with_its_webhooks_and_deliveries(
    tmp_path: Path,
) -> None:
    webhook_id, workflow_id, done = uuid.uuid4(), uuid.uuid4(), result()
    with sqlite3.connect(tmp_path / SQLITE_FILE) as conn:
        conn.executescript(PREVIOUS_SCHEMA)
        conn.execute(
            "INSERT INTO delivered VALUES (?, 'results.refund', ?, ?)",
            (str(workflow_id), str(uuid.uuid4()), datetime.now(UTC).isoformat()),
        )
        conn.execute(
            "INSERT INTO webhooks VALUES (?, 'acme', 'https://hooks.example/in', '[]', '',"
            " 's3cret', ?)",
            (str(webhook_id), NOW),
        )

    async with open_stores(Settings(data_dir=tmp_path)) as stores:
        assert await stores.ledger.delivered(workflow_id)
        [webhook] = await stores.webhooks.webhooks(tenant="acme")
        assert webhook.id == webhook_id
        assert await stores.webhooks.enqueue(done, now=NOW) == 1
        [due] = await claim(stores.webhooks)
        assert (due.secret, due.result) == ("s3cret", done)
    with sqlite3.connect(tmp_path / SQLITE_FILE) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version_delivery").fetchone() == (
            "0004",
        )
