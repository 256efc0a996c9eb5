"""The Kafka layer every service shares: one broker factory, typed decoding that
dead-letters what it cannot accept, and a publisher for enveloped events.

Guarantees set here, once, for every service:

* producers use ``acks=all`` with idempotence on;
* consumers never auto-create topics and commit an offset only after the handler
  returned (``AckPolicy.NACK_ON_ERROR``: an exception rewinds to the same message);
* a message that cannot be decoded into its topic's contract, or whose handler keeps
  failing, goes to the dead-letter topic with its original bytes and the reason, and
  the consumer carries on.

Two ways to consume, with the same guarantees. ``subscriber`` hands a handler one
message at a time and commits after each. ``keyed_subscriber`` takes a batch of up to
``max_records`` messages, runs the messages of different keys (workflows) concurrently
and those of one key in order, and commits the batch's offsets once, after every handler
in it has returned. A process killed mid-batch has committed none of it: the whole batch
is delivered again, and handlers, idempotent by event id, change nothing twice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeAlias

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.kafka.opentelemetry.provider import telemetry_attributes_provider_factory
from faststream.middlewares import AckPolicy
from faststream.opentelemetry.middleware import TelemetryMiddleware
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import DeadLetter, DeadLetterCode
from pactmesh_contracts.topics import DEAD_LETTERS, Topic, topic_for
from pydantic import BaseModel, TypeAdapter, ValidationError, WithJsonSchema

from pactmesh_kit.errors import UndeliverableMessage
from pactmesh_kit.settings import KitSettings

logger = logging.getLogger(__name__)

JSON_HEADERS = {"content-type": "application/json"}
WORKFLOW_ID_ATTRIBUTE = "pactmesh.workflow_id"
"""Span attribute naming the workflow a span worked on, to find a request's trace."""
BATCH_MAX_RECORDS = 256
"""Messages a keyed subscriber takes at once: at most this many handlers run together."""
REBALANCE_WAIT_S = 8.0
"""How long a rebalance waits for the batch in hand (under aiokafka's default 10 s
rebalance timeout, after which the group would go on without this consumer)."""
BATCH_IDLE_MS = 25
"""How long a keyed subscriber's poll waits for a first message; a message arriving
while it waits is taken at once, and after an empty poll FastStream pauses as long, so
an idle hop adds at most this much latency."""

_TRACER_PROVIDERS: weakref.WeakKeyDictionary[KafkaBroker, TracerProvider] = (
    weakref.WeakKeyDictionary()
)
_PROPAGATOR = TraceContextTextMapPropagator()


def make_broker(settings: KitSettings, *, tracer_provider: TracerProvider | None) -> KafkaBroker:
    """A FastStream Kafka broker configured with the mesh's delivery guarantees.

    A plain broker started by the app's lifespan, not FastStream's FastAPI router: that
    integration is deprecated in FastStream 0.7 and re-resolves handler arguments the
    FastAPI way, which would bypass the contract decoder below.
    """
    middlewares: list[Any] = []
    if tracer_provider is not None:
        middlewares.append(
            TelemetryMiddleware(
                settings_provider_factory=_consumed_message_telemetry,
                tracer_provider=tracer_provider,
                include_messages_counters=True,
            )
        )
        middlewares.append(_publish_spans(tracer_provider))
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=settings.service_name,
        acks="all",
        enable_idempotence=True,
        allow_auto_create_topics=False,
        middlewares=middlewares,
        description=f"pactmesh {settings.service_name} service",
        logger=logging.getLogger(f"pactmesh.{settings.service_name}.kafka"),
    )
    # Added last, so innermost: a dead-lettered message is still inside its trace span.
    broker.add_middleware(dead_letter_middleware(broker, settings))
    if tracer_provider is not None:
        _TRACER_PROVIDERS[broker] = tracer_provider
    return broker


def _consumed_message_telemetry(msg: Any) -> Any:
    """FastStream's span for a consumed message, but none for a keyed subscriber's batch
    (it traces each of its messages in that message's trace) and none for a publish
    (``_publish_spans`` traces those)."""
    if msg is None or isinstance(msg, (list, tuple)):
        return None
    return telemetry_attributes_provider_factory(msg)


def _publish_spans(tracer_provider: TracerProvider) -> type[BaseMiddleware]:
    """One producer span per published message, whose context travels in its headers.

    FastStream's middleware records two per message (an empty ``create`` span, then
    ``publish``); spans are a large part of a handler's CPU, so one says the same.
    """
    tracer = tracer_provider.get_tracer("pactmesh_kit.broker")

    class PublishSpans(BaseMiddleware):
        async def publish_scope(self, call_next: Any, cmd: Any) -> Any:
            with tracer.start_as_current_span(
                f"{cmd.destination} publish",
                kind=trace.SpanKind.PRODUCER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation": "publish",
                    "messaging.destination.name": cmd.destination,
                },
            ):
                _PROPAGATOR.inject(cmd.headers)
                return await call_next(cmd)

    return PublishSpans


def consumer_group(settings: KitSettings, topic: Topic) -> str:
    """One consumer group per service and topic, so rebalances stay local."""
    return f"{settings.consumer_group_prefix}.{topic.name}"


def subscriber(
    broker: KafkaBroker, topic: Topic, settings: KitSettings, **options: Any
) -> Callable[[Callable[..., Awaitable[Any]]], Any]:
    """Subscribe a handler to ``topic``: typed decoding, dead-lettering, commit-after."""
    group = consumer_group(settings, topic)
    return broker.subscriber(  # type: ignore[no-any-return]
        topic.qualified(settings.topic_prefix),
        group_id=group,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        decoder=contract_decoder(topic, settings=settings, group=group),
        title=f"{settings.service_name}:{topic.name}",
        description=topic.description,
        **options,
    )


Record: TypeAlias = ConsumerRecord[Any, Any]
"""A message as consumed: what ``refuse`` and dead-letter records describe."""
KeyedHandler: TypeAlias = Callable[[Any, Record], Awaitable[None]]
"""A keyed subscriber's handler: the decoded event and the record it came in."""


def keyed_subscriber(
    broker: KafkaBroker,
    topic: Topic,
    settings: KitSettings,
    *,
    max_records: int = BATCH_MAX_RECORDS,
) -> Callable[[KeyedHandler], KeyedHandler]:
    """Subscribe a handler to ``topic`` in batches, concurrently across keys.

    The handler is called once per message, as with ``subscriber``, with the decoded
    event and its record (for ``refuse``). Messages with the same Kafka key (the
    workflow id) are handled one after another in offset order; different keys run
    concurrently. The batch's offsets are committed once every handler has returned, so
    an offset is never committed before its message's effects are durable. A handler
    that raises is retried in place (the key's later messages wait), then the message
    is dead-lettered, like ``subscriber`` does by rewinding.

    A rebalance waits until the batch in hand is handled (``_BatchGate``), so the next
    owner of a partition never handles a message while this consumer still does.
    """
    group = consumer_group(settings, topic)

    def register(handler: KeyedHandler) -> KeyedHandler:
        deliver = _keyed_delivery(broker, topic, settings, group, handler)
        gate = _BatchGate(topic.name)

        async def consume(records: Any) -> None:
            async with gate.handling():
                await _by_key(records, deliver)

        consume.__name__ = handler.__name__
        consume.__doc__ = handler.__doc__
        # Handed over undecoded (each record is decoded on its own), documented as what
        # the topic carries.
        schema = _inlined(TypeAdapter(list[topic.record_type]).json_schema())  # type: ignore[name-defined]
        consume.__annotations__ = {
            "records": Annotated[Any, WithJsonSchema(schema)],
            "return": None,
        }
        broker.subscriber(
            topic.qualified(settings.topic_prefix),
            group_id=group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            batch=True,
            max_records=max_records,
            batch_timeout_ms=BATCH_IDLE_MS,
            listener=gate,
            decoder=raw_records,
            title=f"{settings.service_name}:{topic.name}",
            description=topic.description,
        )(consume)
        return handler

    return register


class _BatchGate(ConsumerRebalanceListener):  # type: ignore[misc]
    """Holds a rebalance until the batch being handled is done.

    Partitions are revoked before any consumer of the group is given new ones; waiting
    here means a partition's uncommitted messages go to their next owner only once this
    consumer has stopped handling them (it then fails to commit them, so the next owner
    handles them again: idempotent, never concurrent).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._idle = asyncio.Event()
        self._idle.set()

    @asynccontextmanager
    async def handling(self) -> AsyncIterator[None]:
        """Mark a batch as in hand for the duration of the block."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait (bounded) for the batch in hand before the partitions move."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=REBALANCE_WAIT_S)
        except TimeoutError:
            logger.warning("%s: rebalancing with a batch still in hand", self._name)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Nothing to do: handling resumes from the committed offsets."""


def undecoded_batch(topic: Topic) -> Any:
    """The annotation of a batch handler that gets ``topic``'s records undecoded (to
    decode each on its own): no validation, documented as a list of the topic's events."""
    schema = _inlined(TypeAdapter(list[topic.record_type]).json_schema())  # type: ignore[name-defined]
    return Annotated[Any, WithJsonSchema(schema)]


async def raw_records(msg: KafkaMessage, _original: Any = None) -> Any:
    """A batch decoder handing the handler the records as they came."""
    return msg.raw_message


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` references replaced by what they name: pydantic
    cannot nest a schema that carries its own ``$defs`` inside another one."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)  # type: ignore[no-any-return]


async def _by_key(
    records: Sequence[ConsumerRecord[Any, Any]],
    deliver: Callable[[ConsumerRecord[Any, Any]], Awaitable[None]],
) -> None:
    """Deliver ``records``: one key's in order, different keys' concurrently.

    A task group, so that if one key's delivery fails (the dead-letter topic is
    unreachable) the others are cancelled before the batch is rewound: no message is
    ever handled twice at the same time.
    """
    lanes: dict[Any, list[ConsumerRecord[Any, Any]]] = {}
    for record in records:
        key = record.key if record.key is not None else (record.topic, record.partition)
        lanes.setdefault(key, []).append(record)
    if len(lanes) == 1:
        for record in records:
            await deliver(record)
        return

    async def lane(queue: list[ConsumerRecord[Any, Any]]) -> None:
        for record in queue:
            await deliver(record)

    async with asyncio.TaskGroup() as group:
        for queue in lanes.values():
            group.create_task(lane(queue))


def _keyed_delivery(
    broker: KafkaBroker, topic: Topic, settings: KitSettings, group: str, handler: KeyedHandler
) -> Callable[[ConsumerRecord[Any, Any]], Awaitable[None]]:
    """One message of a batch: in its own span, continuing the publisher's trace;
    decoded against ``topic``; handled, retried, or dead-lettered."""
    provider = _TRACER_PROVIDERS.get(broker)
    tracer = (provider or trace.get_tracer_provider()).get_tracer("pactmesh_kit.broker")
    dead_letters = _DeadLetters(broker, settings)
    decode = topic.adapter.validate_json

    async def deliver(record: ConsumerRecord[Any, Any]) -> None:
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        with tracer.start_as_current_span(
            f"{record.topic} process",
            context=_PROPAGATOR.extract(headers),
            kind=trace.SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.message.offset": record.offset,
                "messaging.consumer.group.name": group,
            },
        ) as span:
            try:
                event = decode(record.value or b"")
            except ValidationError as exc:
                await dead_letters.publish(
                    dead_letter_for(
                        record,
                        settings=settings,
                        group=group,
                        error_code=_error_code(exc),
                        error=str(exc),
                        errors=_jsonable_errors(exc),
                    ),
                    record.key,
                )
                return
            if workflow_id := getattr(event, "workflow_id", None):
                span.set_attribute(WORKFLOW_ID_ATTRIBUTE, str(workflow_id))
            await _handle_with_retries(handler, event, record, settings, dead_letters)

    return deliver


async def _handle_with_retries(
    handler: KeyedHandler,
    event: Any,
    record: ConsumerRecord[Any, Any],
    settings: KitSettings,
    dead_letters: _DeadLetters,
) -> None:
    for attempt in range(1, settings.handler_max_attempts + 1):
        try:
            await handler(event, record)
            return
        except UndeliverableMessage as exc:
            await dead_letters.publish(exc.dead_letter, record.key)
            return
        except Exception as exc:
            if attempt < settings.handler_max_attempts:
                logger.exception("handler failed (attempt %d), will retry", attempt)
                await asyncio.sleep(min(0.1 * 2**attempt, 5.0))
                continue
            letter = dead_letter_for(
                record,
                settings=settings,
                group=None,
                error_code="refused",
                error=f"handler failed {attempt} times: {exc!r}",
            )
            await dead_letters.publish(letter, record.key)


class _DeadLetters:
    """Publishes dead-letter records on the dead-letter topic."""

    def __init__(self, broker: KafkaBroker, settings: KitSettings) -> None:
        self._broker = broker
        self._topic = DEAD_LETTERS.qualified(settings.topic_prefix)

    async def publish(self, dead_letter: DeadLetter, key: bytes | None) -> None:
        """Publish ``dead_letter``, keyed like the message it describes."""
        logger.warning(
            "dead-lettering %s[%d]@%d: %s",
            dead_letter.source_topic,
            dead_letter.source_partition,
            dead_letter.source_offset,
            dead_letter.error.splitlines()[0] if dead_letter.error else dead_letter.error_code,
        )
        await self._broker.publish(
            dead_letter.model_dump_json().encode(), self._topic, key=key, headers=JSON_HEADERS
        )


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def dead_letter_for(
    record: ConsumerRecord[Any, Any],
    *,
    settings: KitSettings,
    group: str | None,
    error_code: DeadLetterCode,
    error: str,
    errors: list[dict[str, Any]] | None = None,
) -> DeadLetter:
    """A dead-letter record describing ``record`` and why it was refused."""
    headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
    return DeadLetter(
        service=settings.service_name,
        consumer_group=group,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        original_key_b64=_b64(record.key),
        original_value_b64=_b64(record.value or b"") or "",
        original_headers=headers,
        error_code=error_code,
        error=error[:8000],
        errors=errors or [],
    )


def _jsonable_errors(exc: ValidationError) -> list[dict[str, Any]]:
    return json.loads(exc.json(include_url=False, include_context=False))  # type: ignore[no-any-return]


def contract_decoder(
    topic: Topic, *, settings: KitSettings, group: str
) -> Callable[..., Awaitable[Any]]:
    """A FastStream decoder validating the raw bytes against ``topic``'s contract.

    Validation happens here, on the exact bytes received, rather than in the handler's
    signature, so the dead-letter record can carry those bytes and pydantic's errors.
    """

    async def decode(msg: KafkaMessage, _original: Any = None) -> Any:
        record = msg.raw_message
        assert isinstance(record, ConsumerRecord), "batch subscribers are not used"
        try:
            decoded = topic.adapter.validate_json(record.value or b"")
        except ValidationError as exc:
            code = _error_code(exc)
            raise UndeliverableMessage(
                dead_letter_for(
                    record,
                    settings=settings,
                    group=group,
                    error_code=code,
                    error=str(exc),
                    errors=_jsonable_errors(exc),
                )
            ) from exc
        if workflow_id := getattr(decoded, "workflow_id", None):
            trace.get_current_span().set_attribute(WORKFLOW_ID_ATTRIBUTE, str(workflow_id))
        return decoded

    return decode


def _error_code(exc: ValidationError) -> DeadLetterCode:
    """``undecodable`` (not JSON), ``unknown_type`` (a type tag this topic does not
    carry) or ``invalid`` (anything else the contract refuses)."""
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        return "undecodable"
    if any(
        (
            e["type"] in ("literal_error", "union_tag_invalid")
            and e["loc"]
            and e["loc"][-1] == "type"
        )
        or e["type"] == "union_tag_invalid"
        for e in errors
    ):
        return "unknown_type"
    return "invalid"


class _AttemptCounter:
    """Failed attempts per (topic, partition, offset), bounded so it cannot grow forever."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._counts: OrderedDict[tuple[str, int, int], int] = OrderedDict()
        self._capacity = capacity

    def fail(self, key: tuple[str, int, int]) -> int:
        count = self._counts.pop(key, 0) + 1
        self._counts[key] = count
        while len(self._counts) > self._capacity:
            self._counts.popitem(last=False)
        return count

    def forget(self, key: tuple[str, int, int]) -> None:
        self._counts.pop(key, None)


def dead_letter_middleware(broker: KafkaBroker, settings: KitSettings) -> type[BaseMiddleware]:
    """Middleware that dead-letters refused messages and retries failing handlers.

    A handler exception is retried (the subscriber rewinds to the message) with a short,
    growing pause; after ``handler_max_attempts`` the message is dead-lettered with
    ``error_code="refused"`` so that one poisoned message cannot stall its partition.
    """
    attempts = _AttemptCounter()
    dead_letters = _DeadLetters(broker, settings)
    publish_dead_letter = dead_letters.publish

    class DeadLetterMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            record = msg.raw_message
            if isinstance(record, (list, tuple)):  # a keyed subscriber's batch: it dead-letters
                return await call_next(msg)  # each of its messages itself
            key = (record.topic, record.partition, record.offset)
            try:
                result = await call_next(msg)
            except UndeliverableMessage as exc:
                await publish_dead_letter(exc.dead_letter, record.key)
                return None
            except Exception as exc:
                count = attempts.fail(key)
                if count < settings.handler_max_attempts:
                    logger.exception("handler failed (attempt %d), will retry", count)
                    await asyncio.sleep(min(0.1 * 2**count, 5.0))
                    raise
                attempts.forget(key)
                letter = dead_letter_for(
                    record,
                    settings=settings,
                    group=None,
                    error_code="refused",
                    error=f"handler failed {count} times: {exc!r}",
                )
                await publish_dead_letter(letter, record.key)
                return None
            attempts.forget(key)
            return result

    return DeadLetterMiddleware


class EventPublisher:
    """Publishes enveloped events on the topic the registry names for their payload.

    Declaring each produced topic up front also documents it in the AsyncAPI schema.
    """

    def __init__(self, broker: KafkaBroker, settings: KitSettings, produces: Iterable[Topic]):
        self._broker = broker
        self._prefix = settings.topic_prefix
        self._publishers = {
            topic.name: broker.publisher(
                topic.qualified(self._prefix),
                schema=topic.record_type,
                title=f"{settings.service_name}:{topic.name}",
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
        body = event.model_dump_json().encode()
        headers = {**JSON_HEADERS, "event-type": event.type}
        publisher = self._publishers.get(topic.name)
        if publisher is None:
            sent = await self._broker.publish(
                body, topic.qualified(self._prefix), key=event.key, headers=headers, no_confirm=True
            )
        else:
            sent = await publisher.publish(body, key=event.key, headers=headers, no_confirm=True)
        return sent if isinstance(sent, asyncio.Future) else _acknowledged(sent)

    async def publish_all(self, events: Iterable[Envelope[Any]]) -> None:
        """Publish ``events`` in order, pipelined: one wait for all their acknowledgements."""
        acks = [await self.send(event) for event in events]
        await asyncio.gather(*acks)


async def _acknowledged(value: object) -> object:
    """What a publish that has already been acknowledged (the in-memory broker) returns."""
    return value


def encode(model: BaseModel) -> bytes:
    """The wire form of a contract model."""
    return model.model_dump_json().encode()


def refuse(
    message: KafkaMessage | ConsumerRecord[Any, Any], settings: KitSettings, reason: str
) -> UndeliverableMessage:
    """An exception that dead-letters ``message`` (raise it from a handler) with ``reason``.

    For well-formed events the service cannot act on, such as a result for a workflow
    run it has never heard of: kept, not dropped, and the consumer moves on.
    """
    record = message if isinstance(message, ConsumerRecord) else message.raw_message
    assert isinstance(record, ConsumerRecord), "a batch is refused message by message"
    return UndeliverableMessage(
        dead_letter_for(record, settings=settings, group=None, error_code="refused", error=reason)
    )
