"""A producer aiokafka gave up on for good is replaced once, however many publishes
failed with it; other failures leave it alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaError, KafkaTimeoutError, OutOfOrderSequenceNumber
from pactmesh_kit.kafka import Kafka
from pactmesh_kit.kafka._internal.renewal import ProducerRenewal, is_fatal
from pactmesh_kit.settings import KitSettings


class Producer:
    """FastStream's producer wrapper, recorded."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.serializer, self.codec = None, None

    async def disconnect(self) -> None:
        self.events.append("disconnect")

    async def connect(self, producer: Any, serializer: Any, codec: Any = None) -> None:
        self.events.append(f"connect {type(producer).__name__}")


def test_fatal_errors_are_told_apart() -> None:
    assert is_fatal(OutOfOrderSequenceNumber())
    assert is_fatal(KafkaError("Unexpected error during batch delivery"))
    assert not is_fatal(KafkaTimeoutError())
    assert not is_fatal(KafkaError("something else"))
    assert not is_fatal(ConnectionError())


@pytest.fixture
def kafka(monkeypatch: pytest.MonkeyPatch) -> tuple[Kafka, Producer]:
    kafka = Kafka(KitSettings(topic_prefix="renew."), tracer_provider=None)
    producer = Producer()
    monkeypatch.setattr(kafka.broker.config.broker_config, "producer", producer)

    class Made:
        def __init__(self, **options: Any) -> None:
            assert options["enable_idempotence"] is True
            assert options["acks"] == "all"

    monkeypatch.setattr("pactmesh_kit.kafka._internal.renewal.AIOKafkaProducer", Made)
    return kafka, producer


async def test_the_producer_is_replaced_once_for_many_failed_publishes(
    kafka: tuple[Kafka, Producer],
) -> None:
    broker_kafka, producer = kafka
    middleware = broker_kafka.renewal.middleware()(None, context=None)  # type: ignore[arg-type]

    async def dead(_cmd: Any) -> Any:
        await asyncio.sleep(0.01)  # five publishes in flight on the producer that dies
        raise OutOfOrderSequenceNumber()

    results = await asyncio.gather(
        *(middleware.publish_scope(dead, object()) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, OutOfOrderSequenceNumber) for r in results), "callers retry"
    assert producer.events == ["disconnect", "connect Made"]
    assert broker_kafka.renewal.generation == 1


async def test_a_future_that_fails_for_good_renews_too(kafka: tuple[Kafka, Producer]) -> None:
    broker_kafka, producer = kafka
    renewal: ProducerRenewal = broker_kafka.renewal
    ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    assert renewal.watch(renewal.generation, ack) is ack
    ack.set_exception(OutOfOrderSequenceNumber())
    async with asyncio.timeout(5):
        while renewal.generation == 0:  # noqa: ASYNC110 - a counter, polled with a deadline
            await asyncio.sleep(0.01)
    assert producer.events == ["disconnect", "connect Made"]
    with pytest.raises(OutOfOrderSequenceNumber):
        await ack


async def test_other_failures_keep_the_producer(kafka: tuple[Kafka, Producer]) -> None:
    broker_kafka, producer = kafka
    middleware = broker_kafka.renewal.middleware()(None, context=None)  # type: ignore[arg-type]

    async def slow(_cmd: Any) -> Any:
        raise KafkaTimeoutError()

    with pytest.raises(KafkaTimeoutError):
        await middleware.publish_scope(slow, object())
    assert producer.events == []
