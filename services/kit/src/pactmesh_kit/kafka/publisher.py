"""Publishing enveloped events on the topic the registry names for their payload."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from typing import Any

from faststream.kafka import KafkaBroker
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.topics import Topic, topic_for
from pydantic import BaseModel

from pactmesh_kit.settings import KitSettings

JSON_HEADERS = {"content-type": "application/json"}


def encode(model: BaseModel) -> bytes:
    """The wire form of a contract model."""
    return model.model_dump_json().encode()


class EventPublisher:
    """Publishes enveloped events on the topic the registry names for their payload.

    Only on the topics declared up front (``produces``): each is documented in the
    service's AsyncAPI document, and that document is what the cluster's ACL table
    (``pactmesh_kit.acls``) is checked against, so an undeclared publish is refused here
    rather than by the broker of a secured deployment.
    """

    def __init__(self, broker: KafkaBroker, settings: KitSettings, produces: Iterable[Topic]):
        self._broker = broker
        self._prefix = settings.topic_prefix
        self._publishers = {
            topic.name: broker.publisher(
                topic.qualified(self._prefix),
                schema=topic.record_type,
                # Not the subscribers' "<service>:<name>": a service that both publishes
                # and reads a topic (delivery and the result topics) would document one
                # of the two only, the other's channel and operation overwritten.
                title=f"{settings.service_name}:{topic.name}:publish",
                description=topic.description,
            )
            for topic in produces
        }

    async def publish(self, event: Envelope[Any], *, topic: Topic | None = None) -> None:
        """Publish ``event`` keyed by its workflow id; waits for all in-sync replicas."""
        await (await self.send(event, topic=topic))

    async def send(self, event: Envelope[Any], *, topic: Topic | None = None) -> Awaitable[object]:
        """Hand ``event`` to the producer and return without waiting for the broker.

        Events sent one after another leave in that order (an idempotent producer keeps
        a partition's order through retries). Await the returned future for the
        acknowledgement of all in-sync replicas.
        """
        topic = topic or topic_for(event.payload)
        if not topic.accepts(type(event.payload)):
            raise ValueError(f"{event.type} may not travel on {topic.name}")
        publisher = self._publishers.get(topic.name)
        if publisher is None:
            raise ValueError(f"{topic.name} is not among the topics this publisher declared")
        body = event.model_dump_json().encode()
        headers = {**JSON_HEADERS, "event-type": event.type}
        sent = await publisher.publish(body, key=event.key, headers=headers, no_confirm=True)
        return sent if isinstance(sent, asyncio.Future) else _acknowledged(sent)

    async def publish_all(self, events: Iterable[Envelope[Any]]) -> None:
        """Publish ``events`` in order, pipelined: one wait for all their acknowledgements."""
        acks = [await self.send(event) for event in events]
        await asyncio.gather(*acks)


async def _acknowledged(value: object) -> object:
    """What a publish that has already been acknowledged (the in-memory broker) returns."""
    return value
