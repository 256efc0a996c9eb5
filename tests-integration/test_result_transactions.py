"""Results published exactly once on the real broker (``ResultTransactions``): each in a
Kafka transaction the ledger prepared; an entry left prepared by a process that died is
settled or forgotten as Kafka decided its transaction (committed, aborted, or still open
until the coordinator aborts it); two instances racing on one result publish it once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cryptography.fernet import Fernet
from pactmesh_contracts.envelope import Principal, new_event
from pactmesh_contracts.events import (
    Outcome,
    RequestStatus,
    WorkflowCompleted,
    WorkflowProgress,
)
from pactmesh_contracts.topics import WORKFLOW_PROGRESS, result_topic
from pactmesh_delivery.adapters.secrets import SecretBox
from pactmesh_delivery.adapters.sqlite_store import SqliteDeliveryLedger, open_sqlite_stores
from pactmesh_delivery.adapters.transactions import ResultTransactions
from pactmesh_delivery.domain.results import LedgerEntry, Outgoing, result_for
from pactmesh_delivery.settings import Settings
from pactmesh_kit import dlq

TOPIC = result_topic("refund")


@pytest.fixture
def settings(topic_prefix: str, tmp_path: Path) -> Settings:
    return Settings(topic_prefix=topic_prefix, data_dir=tmp_path)


@pytest.fixture
async def ledger(settings: Settings) -> AsyncIterator[SqliteDeliveryLedger]:
    box = SecretBox([Fernet.generate_key()])
    async with open_sqlite_stores(settings.data_dir / "delivery.sqlite3", box=box) as opened:
        yield opened[0]


@pytest.fixture
async def results(
    settings: Settings, ledger: SqliteDeliveryLedger
) -> AsyncIterator[ResultTransactions]:
    outlet = ResultTransactions(settings, ledger)
    yield outlet
    await outlet.close()


def outgoing() -> Outgoing:
    done = new_event(
        WorkflowCompleted(workflow="refund", outcome=Outcome.SUCCEEDED, output={"ok": True}),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1"),
    )
    delivered = WorkflowProgress(status=RequestStatus.DELIVERED, service="delivery")
    return Outgoing(done.workflow_id, result_for(done), TOPIC, (done.follow(delivered),))


async def committed_records(settings: Settings, topic: str) -> list[Any]:
    """Every record a read-committed reader gets from ``topic``, start to end."""
    consumer = AIOKafkaConsumer(**settings.kafka_client_options(), isolation_level="read_committed")
    tps = await dlq.partitions_of(settings, topic)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        found: list[Any] = []
        deadline = time.monotonic() + 20
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "the topic was not read to its end in 20 s"
            for records in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(records)
        return found
    finally:
        await consumer.stop()


def event_ids(records: list[Any]) -> Counter[str]:
    return Counter(json.loads(r.value)["event_id"] for r in records)


async def prepare_by_hand(
    settings: Settings, ledger: SqliteDeliveryLedger, out: Outgoing, **producer_options: Any
) -> tuple[AIOKafkaProducer, LedgerEntry]:
    """What a delivery instance does up to the commit: the result sent in an open
    transaction, its entry prepared with the position Kafka gave it."""
    producer = AIOKafkaProducer(
        **settings.kafka_client_options(),
        transactional_id=f"test-{uuid.uuid4().hex}",
        **producer_options,
    )
    await producer.start()
    await producer.begin_transaction()
    meta = await (
        await producer.send(
            TOPIC.qualified(settings.topic_prefix),
            out.result.model_dump_json().encode(),
            key=out.result.key,
        )
    )
    entry = LedgerEntry(
        out.workflow_id, TOPIC.name, out.result.event_id, meta.partition, meta.offset
    )
    assert await ledger.prepare([entry]) == []
    return producer, entry


async def test_results_go_out_once_each_with_what_announces_them(
    settings: Settings, ledger: SqliteDeliveryLedger, results: ResultTransactions
) -> None:
    batch = [outgoing() for _ in range(20)]

    assert await asyncio.gather(*(results.publish(o) for o in batch)) == [True] * 20
    assert await asyncio.gather(*(results.publish(o) for o in batch)) == [False] * 20

    topic = TOPIC.qualified(settings.topic_prefix)
    on_topic = await committed_records(settings, topic)
    assert event_ids(on_topic) == Counter({str(o.result.event_id): 1 for o in batch})
    progress = await committed_records(settings, WORKFLOW_PROGRESS.qualified(settings.topic_prefix))
    assert len(progress) == 20
    positions = {(r.partition, r.offset) for r in on_topic}
    for o in batch:
        entry = await ledger.entry(o.workflow_id)
        assert entry is not None
        assert entry.settled
        assert (entry.partition, entry.offset) in positions


async def test_an_entry_whose_transaction_committed_is_settled_from_kafka(
    settings: Settings, ledger: SqliteDeliveryLedger, results: ResultTransactions
) -> None:
    """The instance died after its commit, before settling: nothing is published again."""
    out = outgoing()
    producer, _entry = await prepare_by_hand(settings, ledger, out)
    await producer.commit_transaction()
    await producer.stop()

    assert await results.published(out.workflow_id)
    assert await ledger.delivered(out.workflow_id)
    assert not await results.publish(out)
    on_topic = await committed_records(settings, TOPIC.qualified(settings.topic_prefix))
    assert event_ids(on_topic) == Counter({str(out.result.event_id): 1})


async def test_an_entry_whose_transaction_aborted_is_forgotten_and_published_again(
    settings: Settings, ledger: SqliteDeliveryLedger, results: ResultTransactions
) -> None:
    out = outgoing()
    producer, _entry = await prepare_by_hand(settings, ledger, out)
    await producer.abort_transaction()
    await producer.stop()

    assert not await results.published(out.workflow_id)
    assert await ledger.entry(out.workflow_id) is None
    assert await results.publish(out)

    on_topic = await committed_records(settings, TOPIC.qualified(settings.topic_prefix))
    assert event_ids(on_topic) == Counter({str(out.result.event_id): 1})


async def test_an_open_transaction_is_waited_out_until_the_coordinator_aborts_it(
    settings: Settings, ledger: SqliteDeliveryLedger, results: ResultTransactions
) -> None:
    """The instance died inside its transaction: its successor waits for Kafka's verdict
    (the transaction's timeout), then publishes the result once."""
    out = outgoing()
    producer, _entry = await prepare_by_hand(settings, ledger, out, transaction_timeout_ms=3000)
    try:
        started = time.monotonic()
        assert not await results.published(out.workflow_id)
        waited = time.monotonic() - started
        assert await results.publish(out)
    finally:
        await asyncio.wait_for(producer.stop(), timeout=10)

    print(f"\nwaited {waited:.1f} s for the coordinator to abort the open transaction")
    assert waited >= 1.0  # it did wait for the verdict rather than guess
    on_topic = await committed_records(settings, TOPIC.qualified(settings.topic_prefix))
    assert event_ids(on_topic) == Counter({str(out.result.event_id): 1})


async def test_two_instances_racing_on_one_result_publish_it_once(
    settings: Settings, ledger: SqliteDeliveryLedger, results: ResultTransactions
) -> None:
    other = ResultTransactions(settings, ledger)
    contested = [outgoing() for _ in range(10)]
    try:
        outcomes = await asyncio.gather(
            *(outlet.publish(o) for o in contested for outlet in (results, other))
        )
    finally:
        await other.close()

    assert sum(outcomes) == 10  # each result published by exactly one of the two
    on_topic = await committed_records(settings, TOPIC.qualified(settings.topic_prefix))
    assert event_ids(on_topic) == Counter({str(o.result.event_id): 1 for o in contested})
