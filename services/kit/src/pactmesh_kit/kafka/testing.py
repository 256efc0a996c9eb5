"""Collecting what a service publishes, for tests on FastStream's in-memory broker."""

from __future__ import annotations

from typing import Any

from pactmesh_contracts.topics import Topic

from pactmesh_kit.kafka.broker import Kafka
from pactmesh_kit.kafka.subscriber import Record


def collect(kafka: Kafka, topic: Topic, into: list[Any] | None = None) -> list[Any]:
    """``into`` (a new list by default), to which every event consumed from ``topic``
    is appended, decoded by its contract, in a consumer group of the test's own (the
    in-memory broker, like Kafka, hands a message to one subscriber per group)."""
    events: list[Any] = [] if into is None else into

    async def observe(event: Any, record: Record) -> None:
        events.append(event)

    observe.__name__ = f"observe_{topic.name.replace('.', '_')}"
    kafka.subscriber(topic, name=f"test-observer.{topic.name}")(observe)
    return events
