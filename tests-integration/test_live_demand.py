"""A subscription that is not wanted fetches nothing, on the real broker: intake's live
groups (a group per instance, from the latest offsets) read the progress and result
topics only while a client follows a request on that instance. Records written while
nobody wanted them are never handled; once wanted, the group reads from the topics'
ends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import RequestStatus, WorkflowProgress
from pactmesh_contracts.topics import WORKFLOW_PROGRESS
from pactmesh_kit.kafka import EventPublisher, Kafka, Record
from pactmesh_kit.settings import KitSettings

SYSTEM = Principal(subject="system:test", roles=("service",))


class Live:
    """A live subscription and what it handled, in order."""

    def __init__(self, kafka: Kafka, publisher: EventPublisher) -> None:
        self.kafka = kafka
        self.publisher = publisher
        self.wanted = asyncio.Event()
        self.handled: list[uuid.UUID] = []

        @kafka.subscriber(
            WORKFLOW_PROGRESS,
            name="progress.live",
            per_instance=True,
            from_latest=True,
            wanted=self.wanted,
        )
        async def on_live(event: Envelope[Any], record: Record) -> None:
            self.handled.append(event.workflow_id)

    def consumer(self) -> Any:
        return self.kafka.subscription("progress.live").source.consumer

    async def send(self) -> uuid.UUID:
        """Publish one progress record of a new request: its id."""
        workflow_id = uuid.uuid4()
        progress = WorkflowProgress(status=RequestStatus.RUNNING, service="test")
        event = new_event(progress, workflow_id=workflow_id, tenant="acme", principal=SYSTEM)
        await self.publisher.publish_all([event])
        return workflow_id


@pytest.fixture
async def live(topic_prefix: str) -> AsyncIterator[Live]:
    settings = KitSettings(service_name="intake", topic_prefix=topic_prefix, kafka_idle_poll_ms=200)
    kafka = Kafka(settings, tracer_provider=None)
    subject = Live(kafka, kafka.publisher(WORKFLOW_PROGRESS))
    await kafka.broker.start()
    try:
        yield subject
    finally:
        await kafka.broker.stop()


async def until(check: Callable[[], Any], *, deadline_s: float = 60.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while not (found := check()):
        if loop.time() > deadline:
            raise TimeoutError(f"{check} not true within {deadline_s}s")
        await asyncio.sleep(0.05)
    return found


async def test_records_written_while_no_one_wants_them_are_never_handled(live: Live) -> None:
    # The group holds its partitions (a per-instance group from the latest offsets that
    # fetched would handle what is written from now on) but is not wanted.
    await until(lambda: live.consumer().assignment())
    unwanted = [await live.send() for _ in range(5)]
    await until(lambda: live.consumer().paused())

    live.wanted.set()
    await until(lambda: not live.consumer().paused())
    first = await live.send()
    await until(lambda: first in live.handled)
    assert not set(unwanted) & set(live.handled)
    assert live.handled == [first]

    # Unwanted again: paused again, and what comes meanwhile is skipped too.
    live.wanted.clear()
    await until(lambda: live.consumer().paused())
    skipped = [await live.send() for _ in range(5)]
    live.wanted.set()
    await until(lambda: not live.consumer().paused())
    second = await live.send()
    await until(lambda: second in live.handled)
    assert not set(skipped) & set(live.handled)
    assert live.handled == [first, second]
