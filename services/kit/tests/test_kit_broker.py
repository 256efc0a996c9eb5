"""The contract decoder and the dead-letter middleware, on FastStream's in-memory broker.

The in-memory broker delivers each published record once and hands a handler's
exception back to the publisher: it has no consumer to rewind on nack. A redelivery is
therefore simulated by publishing the same bytes again, which the in-memory broker
gives the same (topic, partition, offset) a Kafka rewind would.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import Channel, DeadLetter, RequestAccepted, ToolCallCompleted
from pactmesh_contracts.topics import (
    DEAD_LETTERS,
    REQUESTS_ACCEPTED,
    TOOL_RESULTS,
    WORKFLOW_PROGRESS,
    ToolResult,
)
from pactmesh_kit.broker import (
    EventPublisher,
    consumer_group,
    encode,
    make_broker,
    refuse,
    subscriber,
)
from pactmesh_kit.settings import KitSettings

PREFIX = "kit-test."
SOURCE = REQUESTS_ACCEPTED.qualified(PREFIX)


class HandlerFailed(Exception):
    """Raised by a test handler on purpose."""


@dataclass
class Mesh:
    """A broker with one handler on ``requests.accepted`` and a dead-letter collector."""

    broker: KafkaBroker
    settings: KitSettings
    handled: list[Envelope[RequestAccepted]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    failures_left: int = 0

    async def send(self, value: bytes, key: bytes = b"wf-1") -> None:
        await self.broker.publish(value, SOURCE, key=key)


def _settings(max_attempts: int = 5) -> KitSettings:
    return KitSettings(
        service_name="kit-test", topic_prefix=PREFIX, handler_max_attempts=max_attempts
    )


def _build(settings: KitSettings) -> Mesh:
    mesh = Mesh(broker=make_broker(settings, tracer_provider=None), settings=settings)

    @subscriber(mesh.broker, REQUESTS_ACCEPTED, settings)
    async def on_accepted(event: Envelope[RequestAccepted]) -> None:
        mesh.handled.append(event)
        if mesh.failures_left:
            mesh.failures_left -= 1
            raise HandlerFailed("backend down")

    @subscriber(mesh.broker, DEAD_LETTERS, settings)
    async def on_dead_letter(letter: DeadLetter) -> None:
        mesh.dead.append(letter)

    return mesh


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    built = _build(_settings())
    async with TestKafkaBroker(built.broker):
        yield built


def _accepted(text: str = "refund order 4411") -> Envelope[Any]:
    return new_event(
        RequestAccepted(text=text, channel=Channel.HTTP),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1"),
    )


def _valid_wire() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(_accepted().model_dump_json())
    return data


async def test_valid_envelope_reaches_the_handler_typed(mesh: Mesh) -> None:
    event = _accepted()
    await mesh.send(encode(event), key=event.key)
    assert mesh.handled == [event]
    assert type(mesh.handled[0]) is REQUESTS_ACCEPTED.record_type
    assert isinstance(mesh.handled[0].payload, RequestAccepted)
    assert mesh.dead == []


def _unknown_field() -> bytes:
    wire = _valid_wire()
    wire["payload"]["priority"] = "high"
    return json.dumps(wire).encode()


def _wrong_type() -> bytes:
    wire = _valid_wire()
    wire["payload"]["text"] = 42
    return json.dumps(wire).encode()


@pytest.mark.parametrize(
    ("value", "error_code", "error_type", "loc"),
    [
        (b'{"type": "request.accepted.v1", oops', "undecodable", "json_invalid", []),
        (_unknown_field(), "invalid", "extra_forbidden", ["payload", "priority"]),
        (_wrong_type(), "invalid", "string_type", ["payload", "text"]),
    ],
    ids=["invalid-json", "unknown-field", "wrong-type"],
)
async def test_refused_message_is_dead_lettered_with_its_exact_bytes(
    mesh: Mesh, value: bytes, error_code: str, error_type: str, loc: list[str]
) -> None:
    await mesh.send(value, key=b"wf-7")

    assert mesh.handled == []
    [letter] = mesh.dead
    assert letter.original_value() == value
    assert letter.original_key_b64 == base64.b64encode(b"wf-7").decode()
    assert letter.error_code == error_code
    assert letter.source_topic == SOURCE
    assert letter.service == "kit-test"
    assert letter.consumer_group == consumer_group(mesh.settings, REQUESTS_ACCEPTED)
    assert [(e["type"], e["loc"]) for e in letter.errors] == [(error_type, loc)]
    assert error_type in letter.error


async def test_consumer_carries_on_after_a_dead_letter(mesh: Mesh) -> None:
    await mesh.send(b"not json at all")
    event = _accepted("the next one")
    await mesh.send(encode(event), key=event.key)

    assert [e.payload.text for e in mesh.handled] == ["the next one"]
    assert [d.error_code for d in mesh.dead] == ["undecodable"]


async def test_failing_handler_is_retried_then_dead_lettered() -> None:
    mesh = _build(_settings(max_attempts=2))
    mesh.failures_left = 10
    event = _accepted()
    async with TestKafkaBroker(mesh.broker):
        # first attempt: the error is re-raised so the subscriber nacks (rewinds)
        with pytest.raises(HandlerFailed):
            await mesh.send(encode(event), key=event.key)
        assert mesh.dead == []
        # the redelivery is the last allowed attempt: dead-lettered, not raised
        await mesh.send(encode(event), key=event.key)

    assert len(mesh.handled) == 2
    [letter] = mesh.dead
    assert letter.error_code == "refused"
    assert "handler failed 2 times" in letter.error
    assert "HandlerFailed('backend down')" in letter.error
    assert letter.original_value() == encode(event)
    assert letter.source_topic == SOURCE


async def test_single_attempt_dead_letters_at_once() -> None:
    mesh = _build(_settings(max_attempts=1))
    mesh.failures_left = 1
    async with TestKafkaBroker(mesh.broker):
        await mesh.send(encode(_accepted()))
    assert [d.error_code for d in mesh.dead] == ["refused"]


async def test_success_after_a_retry_resets_the_attempt_count() -> None:
    mesh = _build(_settings(max_attempts=2))
    mesh.failures_left = 1
    event = _accepted()
    async with TestKafkaBroker(mesh.broker):
        with pytest.raises(HandlerFailed):
            await mesh.send(encode(event))
        await mesh.send(encode(event))  # redelivery succeeds
        assert mesh.dead == []
        # a later failure at the same position starts counting from one again
        mesh.failures_left = 1
        with pytest.raises(HandlerFailed):
            await mesh.send(encode(event))
    assert mesh.dead == []
    assert len(mesh.handled) == 3


async def test_refuse_dead_letters_a_well_formed_event_without_retrying() -> None:
    settings = _settings(max_attempts=3)
    broker = make_broker(settings, tracer_provider=None)
    dead: list[DeadLetter] = []
    calls: list[uuid.UUID] = []

    @subscriber(broker, TOOL_RESULTS, settings)
    async def on_result(event: Envelope[ToolResult], message: KafkaMessage) -> None:
        calls.append(event.event_id)
        raise refuse(message, settings, f"no run {event.workflow_id}")

    @subscriber(broker, DEAD_LETTERS, settings)
    async def on_dead_letter(letter: DeadLetter) -> None:
        dead.append(letter)

    result = _accepted().follow(
        ToolCallCompleted(call_id=uuid.uuid4(), tool="kb.search", result={}, duration_ms=1)
    )
    async with TestKafkaBroker(broker):
        await broker.publish(encode(result), TOOL_RESULTS.qualified(PREFIX), key=result.key)

    assert calls == [result.event_id]
    [letter] = dead
    assert letter.error_code == "refused"
    assert letter.error == f"no run {result.workflow_id}"
    assert letter.original_value() == encode(result)


async def test_event_publisher_routes_by_payload_and_keys_by_workflow() -> None:
    settings = _settings()
    broker = make_broker(settings, tracer_provider=None)
    publisher = EventPublisher(broker, settings, produces=[REQUESTS_ACCEPTED])
    received: list[tuple[str, bytes | None, dict[str, str]]] = []

    @broker.subscriber(SOURCE)
    async def sink(message: KafkaMessage) -> None:
        received.append((message.body.decode(), message.raw_message.key, message.headers))

    event = _accepted()
    async with TestKafkaBroker(broker):
        await publisher.publish(event)
        with pytest.raises(ValueError, match=r"may not travel on workflow\.progress"):
            await publisher.publish(event, topic=WORKFLOW_PROGRESS)

    [(body, key, headers)] = received
    assert REQUESTS_ACCEPTED.adapter.validate_json(body) == event
    assert key == event.key
    assert headers["event-type"] == "request.accepted.v1"
    assert headers["content-type"] == "application/json"


def test_consumer_groups_are_per_service_and_topic() -> None:
    settings = _settings()
    assert consumer_group(settings, REQUESTS_ACCEPTED) == "kit-test.kit-test.requests.accepted"
    assert consumer_group(settings, TOOL_RESULTS) != consumer_group(settings, REQUESTS_ACCEPTED)
