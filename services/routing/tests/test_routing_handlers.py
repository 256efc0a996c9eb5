"""Routing's subscriber on FastStream's in-memory broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    Channel,
    DeadLetter,
    RequestAccepted,
    RequestRouted,
    RequestStatus,
    WorkflowProgress,
)
from pactmesh_contracts.topics import (
    DEAD_LETTERS,
    REQUESTS_ACCEPTED,
    REQUESTS_ROUTED,
    WORKFLOW_PROGRESS,
)
from pactmesh_kit.broker import EventPublisher, encode, make_broker, subscriber
from pactmesh_routing import handlers
from pactmesh_routing.settings import Settings

SETTINGS = Settings(topic_prefix="routing-test.", fallback_workflow="support-triage")


@dataclass
class Captured:
    broker: KafkaBroker
    routed: list[Envelope[RequestRouted]] = field(default_factory=list)
    progress: list[Envelope[WorkflowProgress]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    async def accept(self, event: Envelope[Any]) -> None:
        await self.broker.publish(
            encode(event), REQUESTS_ACCEPTED.qualified(SETTINGS.topic_prefix), key=event.key
        )


@pytest.fixture
async def captured() -> AsyncIterator[Captured]:
    broker = make_broker(SETTINGS, tracer_provider=None)
    publisher = EventPublisher(broker, SETTINGS, produces=[REQUESTS_ROUTED, WORKFLOW_PROGRESS])
    handlers.register(broker, SETTINGS, publisher)
    out = Captured(broker)
    # the test's own consumers of routing's output, decoded by the same contracts
    subscriber(broker, REQUESTS_ROUTED, SETTINGS)(_collect(out.routed))
    subscriber(broker, WORKFLOW_PROGRESS, SETTINGS)(_collect(out.progress))
    subscriber(broker, DEAD_LETTERS, SETTINGS)(_collect(out.dead))
    async with TestKafkaBroker(broker):
        yield out


def _collect(into: list[Any]) -> Any:
    async def handler(record: Any) -> None:
        into.append(record)

    return handler


def _accepted(text: str, **fields: Any) -> Envelope[Any]:
    return new_event(
        RequestAccepted(text=text, channel=Channel.HTTP, **fields),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1", roles=("requester",)),
    )


async def test_accepted_request_is_routed_with_progress(captured: Captured) -> None:
    accepted = _accepted("I want a refund for order 4411", metadata={"ticket": "T-3"})

    await captured.accept(accepted)

    [routed] = captured.routed
    assert routed.workflow_id == accepted.workflow_id
    assert routed.causation_id == accepted.event_id
    assert (routed.tenant, routed.principal) == (accepted.tenant, accepted.principal)
    assert routed.payload.workflow == "refund"
    assert routed.payload.fields == {"order_id": "4411"}
    assert routed.payload.metadata == {"ticket": "T-3"}
    assert routed.payload.text == "I want a refund for order 4411"
    [progress] = captured.progress
    assert progress.workflow_id == accepted.workflow_id
    assert progress.payload.status is RequestStatus.ROUTED
    assert progress.payload.service == "routing"
    assert progress.payload.workflow == "refund"
    assert progress.payload.detail.startswith(f"refund ({routed.payload.confidence:.2f}): matched")


async def test_requested_workflow_is_passed_through(captured: Captured) -> None:
    await captured.accept(_accepted("anything at all", requested_workflow="procurement"))
    [routed] = captured.routed
    assert (routed.payload.workflow, routed.payload.confidence) == ("procurement", 1.0)


async def test_unmatched_request_goes_to_the_fallback(captured: Captured) -> None:
    await captured.accept(_accepted("Lorem ipsum dolor sit amet"))
    [routed] = captured.routed
    assert (routed.payload.workflow, routed.payload.confidence) == ("support-triage", 0.0)


async def test_invalid_record_is_dead_lettered_and_nothing_is_routed(captured: Captured) -> None:
    await captured.broker.publish(
        b'{"type": "request.accepted.v1"}', REQUESTS_ACCEPTED.qualified(SETTINGS.topic_prefix)
    )
    assert captured.routed == []
    assert captured.progress == []
    [letter] = captured.dead
    assert letter.error_code == "invalid"
    assert letter.service == "routing"
