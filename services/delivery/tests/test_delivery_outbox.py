"""The webhook store and its delivery outbox, on a real SQLite file."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pactmesh_delivery.adapters.webhooks import SqliteWebhookStore, open_webhook_store
from pactmesh_delivery.domain.webhooks import (
    DeliveryState,
    ResultRecord,
    Webhook,
    WebhookCreate,
)

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
async def store(tmp_path: Path) -> AsyncIterator[SqliteWebhookStore]:
    async with open_webhook_store(tmp_path / "delivery.sqlite3") as opened:
        yield opened


async def register(
    store: SqliteWebhookStore, tenant: str = "acme", workflows: tuple[str, ...] = ()
) -> Webhook:
    spec = WebhookCreate.model_validate(
        {"url": "https://hooks.example/in", "workflows": list(workflows)}
    )
    return await store.create_webhook(tenant=tenant, spec=spec, secret="s3cret", now=NOW)


async def claim(store: SqliteWebhookStore, now: float = NOW, max_attempts: int = 3) -> list[Any]:
    return await store.claim_due(now=now, lease_until=now + 15, limit=10, max_attempts=max_attempts)


async def test_a_result_read_twice_queues_one_delivery_per_webhook(
    store: SqliteWebhookStore,
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


async def test_the_unique_key_is_enforced_by_the_database(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite3"
    async with open_webhook_store(path) as store:
        webhook = await register(store)
        done = result()
        await store.enqueue(done, now=NOW)
    with sqlite3.connect(path) as conn, pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        conn.execute(
            "INSERT INTO webhook_deliveries SELECT ? , webhook_id, result_event_id, workflow_id,"
            " workflow, tenant, body, record_key, record_headers, source_topic,"
            " source_partition, source_offset, trace_context, state, attempts, last_status,"
            " last_error, next_attempt_at, created_at, updated_at, delivered_at"
            " FROM webhook_deliveries WHERE webhook_id = ?",
            (str(uuid.uuid4()), str(webhook.id)),
        )


async def test_only_the_results_tenant_and_subscribed_workflows_are_queued(
    store: SqliteWebhookStore,
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
    store: SqliteWebhookStore,
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
    store: SqliteWebhookStore,
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
    store: SqliteWebhookStore,
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
    store: SqliteWebhookStore,
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


async def test_pending_deliveries_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "delivery.sqlite3"
    async with open_webhook_store(path) as store:
        await register(store)
        await store.enqueue(done := result(), now=NOW)
        [due] = await claim(store)  # the process dies mid-attempt
    async with open_webhook_store(path) as reopened:
        [resumed] = await claim(reopened, now=NOW + 15)
    assert (resumed.id, resumed.attempts, resumed.result) == (due.id, 2, done)


async def test_deleting_a_webhook_drops_its_pending_deliveries(
    store: SqliteWebhookStore,
) -> None:
    webhook = await register(store)
    await store.enqueue(result(), now=NOW)

    assert not await store.delete_webhook(tenant="globex", webhook_id=webhook.id)
    assert await store.delete_webhook(tenant="acme", webhook_id=webhook.id)

    assert await claim(store) == []
    assert await store.deliveries(tenant="acme", webhook_id=webhook.id, limit=10) is None
    assert not await store.delete_webhook(tenant="acme", webhook_id=webhook.id)


async def test_webhooks_are_read_only_within_their_tenant(store: SqliteWebhookStore) -> None:
    acme = await register(store)
    globex = await register(store, tenant="globex")

    assert [w.id for w in await store.webhooks(tenant="acme")] == [acme.id]
    assert await store.webhook(tenant="acme", webhook_id=acme.id) == acme
    assert await store.webhook(tenant="acme", webhook_id=globex.id) is None
    assert await store.deliveries(tenant="acme", webhook_id=globex.id, limit=10) is None
