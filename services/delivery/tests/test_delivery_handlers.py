"""The delivery subscriber on FastStream's in-memory broker, with a real ledger.

The in-memory broker has no transactions: results go out through ``LedgerOutlet`` here,
which publishes and then prepares and settles the ledger. Exactly-once publishing on a
real broker (``ResultTransactions``) is tested in
``tests-integration/test_result_transactions.py``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    AuditRecorded,
    Channel,
    DeadLetter,
    Outcome,
    RequestAccepted,
    RequestStatus,
    WorkflowCompleted,
    WorkflowProgress,
    WorkflowResult,
)
from pactmesh_contracts.topics import (
    AUDIT,
    DEAD_LETTERS,
    REQUESTS_ACCEPTED,
    WORKFLOW_COMPLETED,
    WORKFLOW_PROGRESS,
    result_topic,
)
from pactmesh_delivery import handlers
from pactmesh_delivery.adapters.secrets import SecretBox
from pactmesh_delivery.adapters.sqlite_store import SqliteWebhookStore, open_sqlite_stores
from pactmesh_delivery.domain.results import Ledger, LedgerEntry, Outgoing, result_event_id
from pactmesh_delivery.domain.webhooks import Webhook, WebhookCreate
from pactmesh_delivery.runtime import Runtime
from pactmesh_delivery.settings import Settings
from pactmesh_kit.kafka import EventPublisher, Kafka, encode
from pactmesh_kit.kafka.testing import collect
from pactmesh_kit.provenance import Provenance
from pactmesh_workflows.registry import registry

SETTINGS = Settings(topic_prefix="delivery-test.")


@dataclass
class Harness:
    broker: KafkaBroker
    results: list[Envelope[WorkflowResult]] = field(default_factory=list)
    progress: list[Envelope[WorkflowProgress]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    webhooks: SqliteWebhookStore | None = None
    audits: list[Envelope[AuditRecorded]] = field(default_factory=list)
    runtime: Runtime | None = None

    async def complete(self, event: Envelope[Any], *, vouched: bool = True) -> None:
        """Publish a completion, of a request the mesh accepted unless not ``vouched``."""
        if vouched:
            await self.accept(event)
        await self.broker.publish(
            encode(event), WORKFLOW_COMPLETED.qualified(SETTINGS.topic_prefix), key=event.key
        )

    async def accept(self, event: Envelope[Any]) -> None:
        """``event``'s request, accepted from its tenant and principal, as intake does."""
        accepted = RequestAccepted(text="a request", channel=Channel.HTTP)
        await self.broker.publish(
            encode(event.follow(accepted)),
            REQUESTS_ACCEPTED.qualified(SETTINGS.topic_prefix),
            key=event.key,
        )


@dataclass
class LedgerOutlet:
    """``ResultOutlet`` for the in-memory broker: publish, then remember (at least once)."""

    publisher: EventPublisher
    ledger: Ledger

    async def published(self, workflow_id: uuid.UUID) -> bool:
        return await self.ledger.delivered(workflow_id)

    async def publish(self, outgoing: Outgoing) -> bool:
        await self.publisher.publish(outgoing.result, topic=outgoing.topic)
        await self.publisher.publish_all(outgoing.followers)
        entry = LedgerEntry(outgoing.workflow_id, outgoing.topic.name, outgoing.result.event_id)
        assert await self.ledger.prepare([entry]) == []
        await self.ledger.settle([outgoing.workflow_id])
        return True


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    kafka = Kafka(SETTINGS, tracer_provider=None)
    publisher = kafka.publisher(*registry().result_topics(), WORKFLOW_PROGRESS, AUDIT)
    runtime = Runtime(settings=SETTINGS, publisher=publisher, provenance=Provenance(wait_s=0.2))
    handlers.register(kafka, runtime)
    broker = kafka.broker
    out = Harness(broker, runtime=runtime)
    # the test's own consumer groups: delivery's groups would share its messages with it
    collect(kafka, result_topic("refund"), out.results)
    collect(kafka, WORKFLOW_PROGRESS, out.progress)
    collect(kafka, DEAD_LETTERS, out.dead)
    collect(kafka, AUDIT, out.audits)

    path = tmp_path / "delivery.sqlite3"
    async with (
        open_sqlite_stores(path, box=SecretBox([Fernet.generate_key()])) as (ledger, webhooks),
        runtime.provenance.opened(SETTINGS.model_copy(update={"data_dir": tmp_path})),
        TestKafkaBroker(broker),
    ):
        runtime.webhooks, runtime.results = webhooks, LedgerOutlet(publisher, ledger)
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


# -- completions that do not act for their request ---------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"tenant": "globex"}, "the event is for tenant 'globex'; request"),
        ({"principal": Principal(subject="mallory")}, "the event acts for 'mallory'"),
        ({"workflow_id": uuid.uuid4()}, "the mesh accepted no request"),
    ],
    ids=["another-tenant", "another-principal", "no-request"],
)
async def test_a_forged_completion_reaches_no_result_topic_and_no_webhook(
    harness: Harness, change: dict[str, Any], reason: str
) -> None:
    store = harness.webhooks
    assert store is not None
    tenant = change.get("tenant", "acme")
    target = await _webhook(store, tenant, [])
    genuine = _completed()
    await harness.accept(genuine)

    await harness.complete(genuine.model_copy(update=change), vouched=False)

    assert harness.results == []
    [letter] = harness.dead
    assert letter.error.startswith("not delivered: ")
    assert reason in letter.error
    [audit] = harness.audits
    assert (audit.payload.service, audit.payload.action) == ("delivery", "result.refused")
    assert reason in audit.payload.detail["reason"]
    assert await store.deliveries(tenant=tenant, webhook_id=target.id, limit=10) == []
    # the genuine completion is still delivered
    await harness.complete(genuine, vouched=False)
    [result] = harness.results
    assert result.workflow_id == genuine.workflow_id


async def test_a_result_forged_onto_a_result_topic_reaches_no_webhook(harness: Harness) -> None:
    store = harness.webhooks
    assert store is not None
    target = await _webhook(store, "acme", [])
    forged = new_event(
        WorkflowResult(workflow="refund", outcome=Outcome.SUCCEEDED, output={"paid": True}),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1"),
    )

    await harness.broker.publish(
        encode(forged), result_topic("refund").qualified(SETTINGS.topic_prefix), key=forged.key
    )

    [letter] = harness.dead
    assert "the mesh accepted no request" in letter.error
    assert [a.payload.action for a in harness.audits] == ["result.refused"]
    assert await store.deliveries(tenant="acme", webhook_id=target.id, limit=10) == []
