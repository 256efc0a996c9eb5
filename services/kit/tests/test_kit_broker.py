"""The one subscriber (keyed batches: contract decoding, retries, dead letters), the
failure policy and the publisher, on FastStream's in-memory broker (which cannot pause a
partition: a batch waits for a message being retried in place; pausing and committing
per partition are tested with a consumer stand-in in ``test_kit_partitions``).

The in-memory broker delivers each published record once. A redelivery is simulated by
publishing the same bytes again, which the in-memory broker gives the same (topic,
partition, offset) a Kafka rewind would.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import ConsumerRecord
from faststream.kafka import KafkaBroker, KafkaResponse, TestKafkaBroker
from faststream.kafka.annotations import KafkaMessage
from faststream.middlewares import AckPolicy
from faststream.specification import AsyncAPI
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    Channel,
    DeadLetter,
    Outcome,
    RequestAccepted,
    RequestStatus,
    ToolCallCompleted,
    WorkflowProgress,
    WorkflowResult,
)
from pactmesh_contracts.topics import (
    DEAD_LETTERS,
    REQUESTS_ACCEPTED,
    TOOL_RESULTS,
    WORKFLOW_PROGRESS,
    ToolResult,
    result_topic,
)
from pactmesh_kit.errors import InvalidMessage, RefusedMessage
from pactmesh_kit.kafka import (
    EventPublisher,
    FailurePolicy,
    Kafka,
    Record,
    Reject,
    Retry,
    consumer_group,
    encode,
)
from pactmesh_kit.kafka._internal.batch import BatchGate
from pactmesh_kit.kafka._internal.decoding import decode
from pactmesh_kit.kafka.testing import collect
from pactmesh_kit.settings import KitSettings
from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE
from pydantic import ValidationError

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


def _settings(**overrides: Any) -> KitSettings:
    return KitSettings(
        service_name="kit-test",
        topic_prefix=PREFIX,
        retry_backoff_initial_s=0.01,
        retry_backoff_max_s=0.05,
        **overrides,
    )


def _build(settings: KitSettings) -> Mesh:
    kafka = Kafka(settings, tracer_provider=None)
    mesh = Mesh(broker=kafka.broker, settings=settings)

    @kafka.subscriber(REQUESTS_ACCEPTED)
    async def on_accepted(event: Envelope[RequestAccepted], record: Record) -> None:
        mesh.handled.append(event)
        if mesh.failures_left:
            mesh.failures_left -= 1
            raise HandlerFailed("backend down")

    collect(kafka, DEAD_LETTERS, mesh.dead)
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


async def test_failing_handler_is_retried_until_it_succeeds_and_never_dead_lettered() -> None:
    mesh = _build(_settings())
    mesh.failures_left = 6  # an outage of six attempts, then the dependency is back
    event = _accepted()
    async with TestKafkaBroker(mesh.broker):
        # retried in place, with backoff, as long as it takes: nothing dead-lettered
        await mesh.send(encode(event), key=event.key)

    assert len(mesh.handled) == 7
    assert mesh.dead == []


async def test_a_message_being_retried_stalls_the_subscriber_and_readiness_says_where() -> None:
    settings = _settings()
    kafka = Kafka(settings, tracer_provider=None)
    down = True
    handled: list[str] = []

    @kafka.subscriber(REQUESTS_ACCEPTED)
    async def on_accepted(event: Envelope[RequestAccepted], record: Record) -> None:
        if down:
            raise HandlerFailed("database unreachable")
        handled.append(event.payload.text)

    event = _accepted("stalled")
    async with TestKafkaBroker(kafka.broker):
        sending = asyncio.create_task(kafka.broker.publish(encode(event), SOURCE, key=b"a"))
        await _until(lambda: kafka.stalls() and kafka.stalls()[0].attempts >= 3)
        [stall] = kafka.stalls()
        assert (stall.topic, stall.offset, stall.event_id) == (SOURCE, 0, str(event.event_id))
        assert stall.error == "HandlerFailed: database unreachable"
        assert not sending.done()
        down = False
        await asyncio.wait_for(sending, timeout=5)

    assert handled == ["stalled"]
    assert kafka.stalls() == []


async def _until(condition: Callable[[], object], within_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_success_after_a_retry_resets_the_attempt_count() -> None:
    mesh = _build(_settings())
    mesh.failures_left = 1
    event = _accepted()
    async with TestKafkaBroker(mesh.broker):
        await mesh.send(encode(event))  # fails once, the retry succeeds
        assert mesh.dead == []
        # a later failure at the same position (a redelivery) starts counting from one again
        mesh.failures_left = 1
        await mesh.send(encode(event))
    assert mesh.dead == []
    assert len(mesh.handled) == 4


async def test_refuse_dead_letters_a_well_formed_event_without_retrying() -> None:
    settings = _settings()
    kafka = Kafka(settings, tracer_provider=None)
    broker = kafka.broker
    calls: list[uuid.UUID] = []

    @kafka.subscriber(TOOL_RESULTS)
    async def on_result(event: Envelope[ToolResult], record: Record) -> None:
        calls.append(event.event_id)
        raise RefusedMessage(f"no run {event.workflow_id}")

    dead: list[DeadLetter] = collect(kafka, DEAD_LETTERS)

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
    kafka = Kafka(settings, tracer_provider=None)
    broker = kafka.broker
    publisher = kafka.publisher(REQUESTS_ACCEPTED)
    received: list[tuple[str, bytes | None, dict[str, str]]] = []

    @broker.subscriber(SOURCE)
    async def sink(message: KafkaMessage) -> None:
        received.append((message.body.decode(), message.raw_message.key, message.headers))

    event = _accepted()
    async with TestKafkaBroker(broker):
        await publisher.publish(event)
        with pytest.raises(ValueError, match=r"may not travel on workflow\.progress"):
            await publisher.publish(event, topic=WORKFLOW_PROGRESS)
        progress = _accepted().follow(WorkflowProgress(status=RequestStatus.ROUTED, service="test"))
        with pytest.raises(ValueError, match=r"workflow\.progress is not among the topics"):
            await publisher.publish(progress)

    [(body, key, headers)] = received
    assert REQUESTS_ACCEPTED.adapter.validate_json(body) == event
    assert key == event.key
    assert headers["event-type"] == "request.accepted.v1"
    assert headers["content-type"] == "application/json"


def test_the_broker_authenticates_as_the_services_principal() -> None:
    settings = KitSettings(
        service_name="tools",
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="tools",
        kafka_sasl_password="pw",  # type: ignore[arg-type]
    )
    client = Kafka(settings, tracer_provider=None).broker.config.broker_config.builder.keywords
    assert client["security_protocol"] == "SASL_PLAINTEXT"
    assert client["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (client["sasl_plain_username"], client["sasl_plain_password"]) == ("tools", "pw")
    plain = Kafka(_settings(), tracer_provider=None).broker.config.broker_config.builder.keywords
    assert plain.get("security_protocol", "PLAINTEXT") == "PLAINTEXT"
    assert "sasl_plain_username" not in plain


def test_consumer_groups_are_per_service_and_topic() -> None:
    settings = _settings()
    assert consumer_group(settings, REQUESTS_ACCEPTED) == "kit-test.kit-test.requests.accepted"
    assert consumer_group(settings, TOOL_RESULTS) != consumer_group(settings, REQUESTS_ACCEPTED)


# --- keyed batches: concurrent across keys, ordered within one ----------------------


@dataclass
class KeyedMesh:
    """A broker with a keyed handler on ``requests.accepted`` and a dead-letter collector."""

    broker: KafkaBroker
    settings: KitSettings
    handle: Callable[[Envelope[RequestAccepted]], Awaitable[None]] | None = None
    handled: list[tuple[str, int]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)

    async def send_batch(self, *messages: tuple[bytes, bytes]) -> None:
        await self.broker.publish_batch(
            *(KafkaResponse(value, key=key) for value, key in messages), topic=SOURCE
        )


def _keyed(settings: KitSettings, provider: TracerProvider | None = None) -> KeyedMesh:
    kafka = Kafka(settings, tracer_provider=provider)
    mesh = KeyedMesh(broker=kafka.broker, settings=settings)

    @kafka.subscriber(REQUESTS_ACCEPTED)
    async def on_accepted(event: Envelope[RequestAccepted], record: Any) -> None:
        mesh.handled.append((event.payload.text, record.offset))
        if mesh.handle is not None:
            await mesh.handle(event)

    collect(kafka, DEAD_LETTERS, mesh.dead)
    return mesh


def _wire(text: str) -> bytes:
    return encode(_accepted(text))


async def test_keyed_batch_runs_keys_concurrently_and_each_key_in_order() -> None:
    mesh = _keyed(_settings())
    started: dict[str, asyncio.Event] = {t: asyncio.Event() for t in ("a1", "a2", "b1")}
    finished: list[str] = []

    async def handle(event: Envelope[RequestAccepted]) -> None:
        text = event.payload.text
        started[text].set()
        if text == "a1":  # holds key a until key b's message runs: they overlap
            await asyncio.wait_for(started["b1"].wait(), timeout=5)
            assert not started["a2"].is_set(), "a2 started before a1 finished"
        finished.append(text)

    mesh.handle = handle
    async with TestKafkaBroker(mesh.broker):
        await mesh.send_batch((_wire("a1"), b"a"), (_wire("a2"), b"a"), (_wire("b1"), b"b"))

    assert finished.index("a1") < finished.index("a2")
    assert sorted(finished) == ["a1", "a2", "b1"]
    assert mesh.dead == []


async def test_keyed_batch_dead_letters_what_it_cannot_decode_and_handles_the_rest() -> None:
    mesh = _keyed(_settings())
    async with TestKafkaBroker(mesh.broker):
        await mesh.send_batch((b"not json", b"a"), (_wire("after"), b"a"), (_wire("b"), b"b"))

    assert sorted(text for text, _ in mesh.handled) == ["after", "b"]
    [letter] = mesh.dead
    assert letter.error_code == "undecodable"
    assert letter.original_value() == b"not json"
    assert letter.consumer_group == consumer_group(mesh.settings, REQUESTS_ACCEPTED)


async def test_keyed_handler_is_retried_in_place_and_the_keys_next_message_waits() -> None:
    mesh = _keyed(_settings())
    failures = iter([HandlerFailed("backend down")] * 3)

    async def handle(event: Envelope[RequestAccepted]) -> None:
        if event.payload.text == "first" and (failure := next(failures, None)) is not None:
            raise failure

    mesh.handle = handle
    async with TestKafkaBroker(mesh.broker):
        await mesh.send_batch((_wire("first"), b"a"), (_wire("next"), b"a"))

    assert [text for text, _ in mesh.handled] == ["first"] * 4 + ["next"]
    assert mesh.dead == []


async def test_keyed_handler_recovers_on_a_retry() -> None:
    mesh = _keyed(_settings())
    failures = iter([HandlerFailed("once")])

    async def handle(event: Envelope[RequestAccepted]) -> None:
        if (failure := next(failures, None)) is not None:
            raise failure

    mesh.handle = handle
    async with TestKafkaBroker(mesh.broker):
        await mesh.send_batch((_wire("flaky"), b"a"))

    assert [text for text, _ in mesh.handled] == ["flaky", "flaky"]
    assert mesh.dead == []


async def test_keyed_refuse_dead_letters_at_once() -> None:
    settings = _settings()
    kafka = Kafka(settings, tracer_provider=None)
    broker = kafka.broker
    calls: list[uuid.UUID] = []

    @kafka.subscriber(TOOL_RESULTS)
    async def on_result(event: Envelope[ToolResult], record: Any) -> None:
        calls.append(event.event_id)
        raise RefusedMessage(f"no run {event.workflow_id}")

    dead: list[DeadLetter] = collect(kafka, DEAD_LETTERS)

    result = _accepted().follow(
        ToolCallCompleted(call_id=uuid.uuid4(), tool="kb.search", result={}, duration_ms=1)
    )
    async with TestKafkaBroker(broker):
        await broker.publish(encode(result), TOOL_RESULTS.qualified(PREFIX), key=result.key)

    assert calls == [result.event_id]
    [letter] = dead
    assert letter.error_code == "refused"
    assert letter.error == f"no run {result.workflow_id}"


async def test_keyed_message_span_continues_the_publishers_trace() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mesh = _keyed(_settings(), provider)
    event = _accepted("traced")
    tracer = provider.get_tracer("test")
    async with TestKafkaBroker(mesh.broker):
        with tracer.start_as_current_span("upstream") as upstream:
            await mesh.broker.publish(encode(event), SOURCE, key=event.key)
    provider.shutdown()

    [process] = [
        s
        for s in exporter.get_finished_spans()
        if s.name == f"{SOURCE} process" and s.attributes and WORKFLOW_ID_ATTRIBUTE in s.attributes
    ]
    assert process.context.trace_id == upstream.get_span_context().trace_id
    assert process.attributes[WORKFLOW_ID_ATTRIBUTE] == str(event.workflow_id)


async def test_keyed_subscriber_documents_the_topics_contract() -> None:
    mesh = _keyed(_settings())
    document = json.loads(AsyncAPI(mesh.broker).to_specification().to_json())
    payloads = json.dumps(document["components"])
    assert "request.accepted.v1" in payloads


async def test_events_sent_without_waiting_leave_in_order_and_can_be_awaited() -> None:
    settings = _settings()
    kafka = Kafka(settings, tracer_provider=None)
    broker = kafka.broker
    publisher = kafka.publisher(REQUESTS_ACCEPTED)
    received: list[str] = []

    @broker.subscriber(SOURCE)
    async def sink(message: KafkaMessage) -> None:
        received.append(REQUESTS_ACCEPTED.adapter.validate_json(message.body).payload.text)

    async with TestKafkaBroker(broker):
        ack = await publisher.send(_accepted("first"))
        await publisher.publish_all([_accepted("second"), _accepted("third")])
        await ack

    assert received == ["first", "second", "third"]


async def test_a_publish_is_one_span_whose_context_the_consumer_continues() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    mesh = _keyed(_settings(), provider)
    event = _accepted("traced")
    async with TestKafkaBroker(mesh.broker):
        await EventPublisher(mesh.broker, mesh.settings, produces=[REQUESTS_ACCEPTED]).publish(
            event
        )
    provider.shutdown()

    spans = exporter.get_finished_spans()
    [publish] = [s for s in spans if s.name == f"{SOURCE} publish"]
    assert not [s for s in spans if s.name.endswith(" create")]
    [process] = [s for s in spans if s.name == f"{SOURCE} process"]
    assert process.parent is not None
    assert process.parent.span_id == publish.context.span_id


def _progress() -> Envelope[Any]:
    return _accepted().follow(WorkflowProgress(status=RequestStatus.RUNNING, service="test"))


async def _trace_progress(settings: KitSettings) -> tuple[list[str], int, int | None]:
    """Publish a progress record inside an ``upstream`` span and read it back: the spans
    recorded, the upstream trace id, and the trace id the handler ran in."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    kafka = Kafka(settings, tracer_provider=provider)
    seen: list[int] = []

    @kafka.subscriber(WORKFLOW_PROGRESS)
    async def on_progress(event: Envelope[Any], record: Record) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    async with TestKafkaBroker(kafka.broker):
        with provider.get_tracer("test").start_as_current_span("upstream") as upstream:
            await kafka.publisher(WORKFLOW_PROGRESS).publish(_progress())
    provider.shutdown()
    names = sorted(s.name for s in exporter.get_finished_spans())
    return names, upstream.get_span_context().trace_id, seen[0] if seen else None


async def test_progress_records_travel_in_the_requests_trace_without_spans_of_their_own() -> None:
    names, upstream, handled_in = await _trace_progress(_settings())
    assert names == ["upstream"]
    assert handled_in == upstream


async def test_untraced_topics_is_a_setting_and_an_empty_one_traces_every_record() -> None:
    settings = _settings().model_copy(update={"untraced_topics": ()})
    names, upstream, handled_in = await _trace_progress(settings)
    topic = WORKFLOW_PROGRESS.qualified(PREFIX)
    assert names == [f"{topic} process", f"{topic} publish", "upstream"]
    assert handled_in == upstream


def test_untraced_topics_are_read_from_the_environment_and_must_be_mesh_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert KitSettings().untraced_topics == ("audit", "workflow.progress")
    monkeypatch.setenv("PACTMESH_UNTRACED_TOPICS", " audit , ")
    assert KitSettings().untraced_topics == ("audit",)
    monkeypatch.setenv("PACTMESH_UNTRACED_TOPICS", "")
    assert KitSettings().untraced_topics == ()
    monkeypatch.setenv("PACTMESH_UNTRACED_TOPICS", "audit,workflow.progres")
    with pytest.raises(ValidationError, match=r"not a mesh topic: workflow\.progres"):
        KitSettings()


async def test_a_rebalance_waits_for_the_batch_in_hand() -> None:
    gate = BatchGate("test")
    order: list[str] = []

    async def batch() -> None:
        async with gate.handling():
            await asyncio.sleep(0.05)
            order.append("batch done")

    async def rebalance() -> None:
        await asyncio.sleep(0)  # the batch is in hand first
        await gate.on_partitions_revoked(set())
        order.append("partitions revoked")

    await asyncio.wait_for(asyncio.gather(batch(), rebalance()), timeout=5)
    assert order == ["batch done", "partitions revoked"]
    await asyncio.wait_for(gate.on_partitions_revoked(set()), timeout=1)  # idle: at once


# --- the failure policy: the one place that decides --------------------------------


def test_the_policy_rejects_poison_at_once_and_retries_the_rest_with_a_growing_pause() -> None:
    policy = FailurePolicy(backoff_initial_s=0.2, backoff_max_s=5.0)
    invalid = InvalidMessage("undecodable", "not JSON", [{"type": "json_invalid"}])
    assert policy.verdict(invalid, attempt=1) == Reject(
        "undecodable", "not JSON", [{"type": "json_invalid"}]
    )
    too_large = InvalidMessage("too_large", "2000000 bytes", [])
    assert policy.verdict(too_large, attempt=1) == Reject("too_large", "2000000 bytes")
    assert policy.verdict(RefusedMessage("no run"), attempt=1) == Reject("refused", "no run")
    failure = HandlerFailed("backend down")
    assert policy.verdict(failure, attempt=1) == Retry(0.2)
    assert policy.verdict(failure, attempt=2) == Retry(0.4)
    assert policy.verdict(failure, attempt=3) == Retry(0.8)
    # never dead-lettered: an outage is waited out, the pause capped
    assert policy.verdict(failure, attempt=19) == Retry(5.0)
    assert policy.verdict(failure, attempt=10_000) == Retry(5.0)


async def test_a_subscriber_takes_its_failure_policy_from_the_kafka_it_is_made_on() -> None:
    class NeverRetry(FailurePolicy):
        def verdict(self, error: Exception, *, attempt: int) -> Retry | Reject:
            return Reject("refused", f"no retries: {error}")

    kafka = Kafka(_settings(), tracer_provider=None, policy=NeverRetry())
    handled: list[str] = []

    @kafka.subscriber(REQUESTS_ACCEPTED)
    async def on_accepted(event: Envelope[RequestAccepted], record: Record) -> None:
        handled.append(event.payload.text)
        raise HandlerFailed("down")

    dead: list[DeadLetter] = collect(kafka, DEAD_LETTERS)
    async with TestKafkaBroker(kafka.broker):
        await kafka.broker.publish(_wire("once"), SOURCE, key=b"a")

    assert handled == ["once"]
    assert [d.error for d in dead] == ["no retries: down"]


# --- options: several topics, per-instance groups, selection, leniency ---------------


def _recording(kafka: Kafka) -> list[dict[str, Any]]:
    """The options each subscriber is registered on FastStream's broker with, from now."""
    calls: list[dict[str, Any]] = []
    register = kafka.broker.subscriber

    def recorded(*topics: Any, **options: Any) -> Any:
        calls.append({"topics": topics, **options})
        return register(*topics, **options)

    kafka.broker.subscriber = recorded  # type: ignore[method-assign]
    return calls


def test_a_subscriber_of_one_topic_has_the_services_group_for_it_from_the_earliest() -> None:
    kafka = Kafka(_settings(), tracer_provider=None)
    calls = _recording(kafka)
    kafka.subscriber(REQUESTS_ACCEPTED)(_ignore)
    [call] = calls
    assert call["topics"] == (SOURCE,)
    assert call["group_id"] == consumer_group(kafka.settings, REQUESTS_ACCEPTED)
    assert call["auto_offset_reset"] == "earliest"
    assert (call["batch"], call["max_records"]) == (True, 256)
    # committed by the subscriber, per partition: never past a message being retried
    assert call["ack_policy"] is AckPolicy.MANUAL
    # an aborted redrive transaction (pactmesh dlq) is never handled
    assert call["isolation_level"] == "read_committed"


def test_an_idle_subscribers_fetch_is_held_as_long_as_the_setting_says() -> None:
    """``PACTMESH_KAFKA_FETCH_MAX_WAIT_MS``: how long the broker holds an idle consumer's
    fetch, 3 s unless set (aiokafka's own is 0.5 s)."""
    kafka = Kafka(_settings(), tracer_provider=None)
    calls = _recording(kafka)
    kafka.subscriber(REQUESTS_ACCEPTED)(_ignore)
    assert calls[0]["fetch_max_wait_ms"] == 3_000
    tuned = Kafka(_settings(kafka_fetch_max_wait_ms=750), tracer_provider=None)
    calls = _recording(tuned)
    tuned.subscriber(REQUESTS_ACCEPTED)(_ignore)
    assert calls[0]["fetch_max_wait_ms"] == 750


def test_a_per_instance_subscriber_has_a_group_of_its_own_from_the_latest() -> None:
    kafka = Kafka(_settings(), tracer_provider=None)
    calls = _recording(kafka)
    for _ in range(2):
        kafka.subscriber(
            WORKFLOW_PROGRESS, name="progress.live", per_instance=True, from_latest=True
        )(_ignore)
    first, second = (call["group_id"] for call in calls)
    prefix = consumer_group(kafka.settings, "progress.live") + "."
    assert first.startswith(prefix)
    assert second.startswith(prefix)
    assert first != second
    assert {call["auto_offset_reset"] for call in calls} == {"latest"}


def test_several_topics_need_a_name_and_one_record_type() -> None:
    kafka = Kafka(_settings(), tracer_provider=None)
    with pytest.raises(ValueError, match="needs a name"):
        kafka.subscriber(REQUESTS_ACCEPTED, TOOL_RESULTS)
    with pytest.raises(ValueError, match="share a record type"):
        kafka.subscriber(REQUESTS_ACCEPTED, TOOL_RESULTS, name="mixed")(_ignore)


async def test_a_subscriber_of_several_topics_decodes_each_by_the_shared_contract() -> None:
    kafka = Kafka(_settings(), tracer_provider=None)
    seen: list[tuple[str, str]] = []
    topics = [result_topic(w) for w in ("refund", "procurement")]

    @kafka.subscriber(*topics, name="results")
    async def on_result(event: Envelope[WorkflowResult], record: Record) -> None:
        seen.append((record.topic, event.payload.workflow))

    async with TestKafkaBroker(kafka.broker):
        for topic in topics:
            workflow = topic.name.removeprefix("results.")
            result = _accepted().follow(
                WorkflowResult(workflow=workflow, outcome=Outcome.SUCCEEDED)
            )
            await kafka.broker.publish(encode(result), topic.qualified(PREFIX), key=result.key)

    assert seen == [(t.qualified(PREFIX), t.name.removeprefix("results.")) for t in topics]
    [sub] = kafka.broker.subscribers
    assert sub.group_id == consumer_group(kafka.settings, "results")


async def test_unselected_records_are_skipped_undecoded() -> None:
    kafka = Kafka(_settings(), tracer_provider=None)
    handled: list[str] = []

    @kafka.subscriber(REQUESTS_ACCEPTED, select=lambda record: record.key == b"wanted")
    async def on_accepted(event: Envelope[RequestAccepted], record: Record) -> None:
        handled.append(event.payload.text)

    dead: list[DeadLetter] = collect(kafka, DEAD_LETTERS)
    async with TestKafkaBroker(kafka.broker):
        await kafka.broker.publish_batch(
            KafkaResponse(b"not json", key=b"other"),
            KafkaResponse(_wire("yes"), key=b"wanted"),
            KafkaResponse(_wire("no"), key=b"other"),
            topic=SOURCE,
        )

    assert handled == ["yes"]
    assert dead == []


async def test_a_lenient_subscriber_skips_what_the_contract_refuses() -> None:
    kafka = Kafka(_settings(), tracer_provider=None)
    handled: list[str] = []

    @kafka.subscriber(REQUESTS_ACCEPTED, lenient=True)
    async def on_accepted(event: Envelope[RequestAccepted], record: Record) -> None:
        handled.append(event.payload.text)

    dead: list[DeadLetter] = collect(kafka, DEAD_LETTERS)
    async with TestKafkaBroker(kafka.broker):
        await kafka.broker.publish_batch(
            KafkaResponse(b"not json", key=b"a"),
            KafkaResponse(_wire("fine"), key=b"a"),
            topic=SOURCE,
        )

    assert handled == ["fine"]
    assert dead == []


async def test_the_asyncapi_document_shows_a_subscribers_record_type() -> None:
    kafka = Kafka(_settings(), tracer_provider=None)
    kafka.subscriber(TOOL_RESULTS)(_ignore)
    document = json.loads(AsyncAPI(kafka.broker).to_specification().to_json())
    [message] = document["components"]["messages"].values()
    schema = json.dumps(document["components"]["schemas"])
    assert "tool.call.completed.v1" in schema
    assert "tool.call.failed.v1" in schema
    assert message["payload"]


async def _ignore(event: Any, record: Record) -> None:
    """A handler for subscribers whose messages no test sends."""


# --- bounded dead letters --------------------------------------------------------------


async def test_an_oversized_message_is_refused_by_size_before_it_is_decoded() -> None:
    kafka = Kafka(_settings(), tracer_provider=None)
    handled: list[str] = []

    @kafka.subscriber(REQUESTS_ACCEPTED, max_bytes=4096)
    async def on_accepted(event: Envelope[RequestAccepted], record: Record) -> None:
        handled.append(event.payload.text)

    dead: list[DeadLetter] = collect(kafka, DEAD_LETTERS)
    huge = encode(_accepted("x" * 10_000))  # valid, only too large
    async with TestKafkaBroker(kafka.broker):
        await kafka.broker.publish_batch(
            KafkaResponse(huge, key=b"a"), KafkaResponse(_wire("small"), key=b"a"), topic=SOURCE
        )

    assert handled == ["small"], "the partition keeps flowing"
    [letter] = dead
    assert letter.error_code == "too_large"
    assert letter.errors == []
    assert f"{len(huge)} bytes" in letter.error
    assert (letter.original_size, letter.original_truncated) == (len(huge), False)
    assert letter.original_value() == huge


def _invalid_of_size(size: int) -> bytes:
    """A well-formed envelope whose payload holds ``size`` bytes of an unknown field."""
    wire = _valid_wire()
    wire["payload"]["blob"] = "y" * size
    return json.dumps(wire).encode()


async def test_a_large_invalid_message_gives_a_bounded_dead_letter_without_its_input() -> None:
    settings = KitSettings(
        service_name="kit-test",
        topic_prefix=PREFIX,
        max_message_bytes=4_000_000,
        dead_letter_max_bytes=100_000,
    )
    kafka = Kafka(settings, tracer_provider=None)
    kafka.subscriber(REQUESTS_ACCEPTED)(_ignore)
    dead: list[DeadLetter] = collect(kafka, DEAD_LETTERS)
    value = _invalid_of_size(2_000_000)
    async with TestKafkaBroker(kafka.broker):
        await kafka.broker.publish(value, SOURCE, key=b"wf-9")

    [letter] = dead
    assert letter.error_code == "invalid"
    assert len(encode(letter)) <= 100_000
    assert letter.original_truncated
    assert letter.original_size == len(value)
    assert letter.original_sha256 == hashlib.sha256(value).hexdigest()
    assert value.startswith(letter.original_value())
    assert letter.source_ref == f"{SOURCE}/0/0"
    assert [(e["type"], e["loc"]) for e in letter.errors] == [
        ("extra_forbidden", ["payload", "blob"])
    ]
    assert "input" not in letter.errors[0]
    assert "yyyy" not in letter.error, "the error never repeats the input"


async def test_a_dead_letter_keeps_a_small_original_whole() -> None:
    kafka = Kafka(_settings(), tracer_provider=None)
    kafka.subscriber(REQUESTS_ACCEPTED)(_ignore)
    dead: list[DeadLetter] = collect(kafka, DEAD_LETTERS)
    value = _invalid_of_size(600_000)  # 800 KB once base64-encoded: still under 1 MB
    async with TestKafkaBroker(kafka.broker):
        await kafka.broker.publish(value, SOURCE, key=b"wf-9")

    [letter] = dead
    assert not letter.original_truncated
    assert letter.original_value() == value
    assert len(encode(letter)) <= kafka.settings.dead_letter_max_bytes


def test_many_field_errors_are_cut_to_the_first_few() -> None:
    wire = _valid_wire()
    wire["payload"]["metadata"] = {f"k{n}": n for n in range(45)}  # 45 numbers, not strings
    record = ConsumerRecord(SOURCE, 0, 0, 0, 0, b"k", json.dumps(wire).encode(), None, 1, 1, ())
    with pytest.raises(InvalidMessage) as refused:
        decode(REQUESTS_ACCEPTED, record)
    assert len(refused.value.errors) == 20
    assert "45 validation error(s)" in str(refused.value)
    assert "and 25 more" in str(refused.value)


async def test_a_topic_both_published_and_read_is_documented_both_ways() -> None:
    kafka = Kafka(_settings(), tracer_provider=None)
    kafka.subscriber(TOOL_RESULTS)(_ignore)
    kafka.publisher(TOOL_RESULTS)
    document = json.loads(AsyncAPI(kafka.broker).to_specification().to_json())
    actions = sorted(op["action"] for op in document["operations"].values())
    assert actions == ["receive", "send"]
