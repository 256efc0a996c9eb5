"""The delivery subscriber on FastStream's in-memory broker, with a real ledger."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    DeadLetter,
    Outcome,
    RequestStatus,
    WorkflowCompleted,
    WorkflowProgress,
    WorkflowResult,
)
from pactmesh_contracts.topics import (
    AUDIT,
    DEAD_LETTERS,
    WORKFLOW_COMPLETED,
    WORKFLOW_PROGRESS,
    result_topic,
)
from pactmesh_delivery import handlers
from pactmesh_delivery.adapters.ledger import open_ledger
from pactmesh_delivery.adapters.webhooks import SqliteWebhookStore, open_webhook_store
from pactmesh_delivery.domain.results import result_event_id
from pactmesh_delivery.domain.webhooks import Webhook, WebhookCreate
from pactmesh_delivery.runtime import Runtime
from pactmesh_delivery.settings import Settings
from pactmesh_kit.kafka import Kafka, encode
from pactmesh_kit.kafka.testing import collect
from pactmesh_workflows.registry import registry

SETTINGS = Settings(topic_prefix="delivery-test.")


@dataclass
class Harness:
    broker: KafkaBroker
    results: list[Envelope[WorkflowResult]] = field(default_factory=list)
    progress: list[Envelope[WorkflowProgress]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    webhooks: SqliteWebhookStore | None = None

    async def complete(self, event: Envelope[Any]) -> None:
        await self.broker.publish(
            encode(event), WORKFLOW_COMPLETED.qualified(SETTINGS.topic_prefix), key=event.key
        )


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    kafka = Kafka(SETTINGS, tracer_provider=None)
    publisher = kafka.publisher(*registry().result_topics(), WORKFLOW_PROGRESS, AUDIT)
    runtime = Runtime(settings=SETTINGS, publisher=publisher)
    handlers.register(kafka, runtime)
    broker = kafka.broker
    out = Harness(broker)
    # the test's own consumer groups: delivery's groups would share its messages with it
    collect(kafka, result_topic("refund"), out.results)
    collect(kafka, WORKFLOW_PROGRESS, out.progress)
    collect(kafka, DEAD_LETTERS, out.dead)

    path = tmp_path / "delivery.sqlite3"
    async with (
        open_ledger(path) as ledger,
        open_webhook_store(path) as webhooks,
        TestKafkaBroker(broker),
    ):
        runtime.ledger, runtime.webhooks = ledger, webhooks
        out.webhooks = webhooks
        yield out


def _completed(workflow: str = "refund") -> Envelope[Any]:
    return new_event(
        WorkflowCompleted(workflow=workflow, outcome=Outcome.SUCCEEDED, output={"ok": True}),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1"),
    )


async def test_result_is_published_once_then_marked_delivered(harness: Harness) -> None:
    done = _completed()

    await harness.complete(done)

    [result] = harness.results
    assert result.event_id == result_event_id(done.workflow_id)
    assert result.payload.output == {"ok": True}
    [progress] = harness.progress
    assert progress.payload.status is RequestStatus.DELIVERED
    assert progress.payload.detail == "published on delivery-test.results.refund"


async def test_redelivered_completion_publishes_nothing(harness: Harness) -> None:
    done = _completed()
    await harness.complete(done)
    await harness.complete(done)
    assert len(harness.results) == 1
    assert len(harness.progress) == 1


async def test_workflow_without_a_result_topic_is_dead_lettered(harness: Harness) -> None:
    await harness.complete(_completed("teleportation"))
    assert harness.results == []
    [letter] = harness.dead
    assert letter.error_code == "refused"
    assert letter.error == "no result topic for workflow 'teleportation'"


async def _webhook(store: SqliteWebhookStore, tenant: str, workflows: list[str]) -> Webhook:
    spec = WebhookCreate.model_validate({"url": "https://h.example/in", "workflows": workflows})
    return await store.create_webhook(tenant=tenant, spec=spec, secret="s", now=0.0)


async def test_a_published_result_is_queued_once_for_each_matching_webhook(
    harness: Harness,
) -> None:
    store = harness.webhooks
    assert store is not None
    everything = await _webhook(store, "acme", [])
    refunds = await _webhook(store, "acme", ["refund"])
    procurement = await _webhook(store, "acme", ["procurement"])
    globex = await _webhook(store, "globex", [])
    done = _completed()

    await harness.complete(done)
    [result] = harness.results
    # The same result read again (re-published after a crash, or redelivered): no new row.
    await harness.broker.publish(
        encode(result), result_topic("refund").qualified(SETTINGS.topic_prefix), key=result.key
    )

    queued = {}
    for webhook, tenant in (
        (everything, "acme"),
        (refunds, "acme"),
        (procurement, "acme"),
        (globex, "globex"),
    ):
        queued[webhook.id] = await store.deliveries(tenant=tenant, webhook_id=webhook.id, limit=10)
    assert {k: len(v or []) for k, v in queued.items()} == {
        everything.id: 1,
        refunds.id: 1,
        procurement.id: 0,
        globex.id: 0,
    }
    [delivery] = queued[everything.id] or []
    assert (delivery.result_event_id, delivery.workflow_id) == (
        result_event_id(done.workflow_id),
        done.workflow_id,
    )
    [due, _] = await store.claim_due(now=1e12, lease_until=2e12, limit=10, max_attempts=3)
    assert due.result.body == encode(result)
    assert due.result.source_topic == "delivery-test.results.refund"
