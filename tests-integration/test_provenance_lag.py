"""Provenance on the real broker: an event whose request is not recorded yet is refused
only once the service's consumer group has read every accepted request written before
it; while the group is behind (its instance killed, a backlog) the event is retried,
not refused (the scale test's kill of one instance of every service had a procurement
run's tool call refused when its request's acceptance sat on the killed instance's
partition)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import Channel, RequestAccepted, ToolCallRequested
from pactmesh_contracts.topics import REQUESTS_ACCEPTED
from pactmesh_kit.kafka import EventPublisher, Kafka
from pactmesh_kit.provenance import Provenance, RequestNotReadYet
from pactmesh_kit.settings import KitSettings
from pactmesh_kit.stores import StoreSettings

ALICE = Principal(subject="alice", roles=("requester",), scopes=("workflow:refund",))


class Held:
    """Provenance whose recording of accepted requests waits while ``held``: a consumer
    group that has fetched a request's acceptance but not handled it (nor committed)."""

    def __init__(self, provenance: Provenance) -> None:
        self.open = asyncio.Event()
        self.open.set()
        record = provenance.record

        async def held(event: Envelope[Any]) -> None:
            await self.open.wait()
            await record(event)

        provenance.record = held  # type: ignore[method-assign]


@pytest.fixture
def settings(topic_prefix: str) -> KitSettings:
    return KitSettings(service_name="tools", topic_prefix=topic_prefix, kafka_idle_poll_ms=200)


@pytest.fixture
async def setup(
    settings: KitSettings, tmp_path: Path
) -> AsyncIterator[tuple[Provenance, Held, EventPublisher]]:
    kafka = Kafka(settings, tracer_provider=None)
    provenance = Provenance(wait_s=0.5)
    held = Held(provenance)
    provenance.subscribe(kafka)
    publisher = kafka.publisher(REQUESTS_ACCEPTED)
    async with provenance.opened(StoreSettings(data_dir=tmp_path)):
        await kafka.broker.start()
        try:
            yield provenance, held, publisher
        finally:
            await kafka.broker.stop()


async def until(check: Callable[[], Awaitable[Any]], *, deadline_s: float = 60.0) -> Any:
    """``check``'s first truthy answer, polled for ``deadline_s``; a ``RequestNotReadYet``
    counts as not yet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    while True:
        try:
            if found := await check():
                return found
        except RequestNotReadYet:
            pass
        if loop.time() > deadline:
            raise TimeoutError(f"no answer from {check} in {deadline_s}s")
        await asyncio.sleep(0.2)


def _accepted() -> Envelope[Any]:
    return new_event(
        RequestAccepted(text="refund order 4411", channel=Channel.HTTP),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=ALICE,
    )


def _call(request: Envelope[Any]) -> Envelope[Any]:
    return request.follow(
        ToolCallRequested(
            call_id=uuid.uuid4(),
            tool="payments.refund",
            arguments={},
            idempotency_key=f"{request.workflow_id}:refund",
            timeout_s=30,
        )
    )


async def test_an_event_whose_request_is_not_read_yet_is_retried_then_acts_for_it(
    setup: tuple[Provenance, Held, EventPublisher],
) -> None:
    provenance, held, publisher = setup
    warm = _accepted()  # the group has joined and read up to here
    await publisher.publish(warm)
    await until(lambda: provenance.requests.get(warm.workflow_id))

    held.open.clear()
    request = _accepted()
    await publisher.publish(request)
    with pytest.raises(RequestNotReadYet):
        await provenance.refusal(_call(request))

    held.open.set()
    assert await provenance.refusal(_call(request)) is None


async def test_an_event_of_no_accepted_request_is_refused_once_the_group_has_read_all(
    setup: tuple[Provenance, Held, EventPublisher],
) -> None:
    provenance, _, publisher = setup
    warm = _accepted()
    await publisher.publish(warm)
    await until(lambda: provenance.requests.get(warm.workflow_id))

    forged = _call(_accepted())  # no acceptance was ever written for it
    # The group commits its last batch a moment after handling it: until then, retried.
    refusal = await until(lambda: provenance.refusal(forged), deadline_s=30)
    assert refusal.startswith("the mesh accepted no request")
