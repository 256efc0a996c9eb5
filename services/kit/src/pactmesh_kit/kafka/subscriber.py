"""The one way to consume: keyed batches.

A subscriber takes up to ``max_records`` messages at once and hands its handler one
message at a time, decoded against the topic's contract, with the record it came in.
Messages with the same Kafka key (the workflow id) are handled one after another in
offset order; different keys run concurrently. The batch's offsets are committed once,
after every handler in it has returned, so an offset is never committed before its
message's effects are durable: a process killed mid-batch has committed none of it, the
whole batch is delivered again, and handlers, idempotent by event id, change nothing
twice. A rebalance waits for the batch in hand (``BatchGate``), so the next owner of a
partition never handles a message while this consumer still does.

A message that fails is put to the ``FailurePolicy`` (``pactmesh_kit.kafka.policy``):
retried in place (the key's later messages wait) or dead-lettered with its original
bytes and the reason, after which the consumer carries on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy
from opentelemetry import trace
from pactmesh_contracts.topics import Topic

from pactmesh_kit.errors import InvalidMessage
from pactmesh_kit.kafka._internal.batch import BatchGate, Record, by_key
from pactmesh_kit.kafka._internal.decoding import decode
from pactmesh_kit.kafka._internal.instruments import KafkaInstruments
from pactmesh_kit.kafka._internal.schema import documented_batch_handler
from pactmesh_kit.kafka._internal.tracing import consumer_span
from pactmesh_kit.kafka.dead_letters import DeadLetters
from pactmesh_kit.kafka.policy import FailurePolicy, Reject
from pactmesh_kit.settings import KitSettings
from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE

__all__ = ["BATCH_IDLE_MS", "BATCH_MAX_RECORDS", "Handler", "Record", "Subscription"]

logger = logging.getLogger(__name__)

BATCH_MAX_RECORDS = 256
"""Messages a subscriber takes at once: at most this many handlers run together."""
BATCH_IDLE_MS = 25
"""How long a subscriber's poll waits for a first message; a message arriving while it
waits is taken at once, and after an empty poll FastStream pauses as long, so an idle
hop adds at most this much latency."""

Handler: TypeAlias = Callable[[Any, Record], Awaitable[None]]
"""A subscriber's handler: the decoded event and the record it came in."""


def consumer_group(settings: KitSettings, name: Topic | str) -> str:
    """One consumer group per service and topic (or named subscription), so rebalances
    stay local."""
    return f"{settings.consumer_group_prefix}.{name.name if isinstance(name, Topic) else name}"


@dataclass(frozen=True)
class Subscription:
    """What one subscriber reads, and how."""

    topics: tuple[Topic, ...]
    """One topic, or several that carry the same record type."""
    name: str
    """Names the consumer group (``<prefix><service>.<name>``) and the AsyncAPI channel."""
    per_instance: bool = False
    """A consumer group of this process's own (a random suffix), so every instance reads
    every message: for state each instance keeps in memory (intake's live feed)."""
    from_latest: bool = False
    """A new group starts at the latest offsets instead of the earliest."""
    max_records: int = BATCH_MAX_RECORDS
    select: Callable[[Record], bool] | None = None
    """Records for which it is false are skipped undecoded (and committed with the batch)."""
    lenient: bool = False
    """Skip what the contract refuses instead of dead-lettering it (when another group's
    subscriber of the same topic dead-letters it already, once)."""
    description: str | None = None
    traced: bool = True
    """False: no consumer span per message (records about requests, such as the audit
    topic's, rather than steps of them: a span each would cost more than it tells)."""


class KeyedSubscriber:
    """Runs one subscription's handler over each batch FastStream hands it."""

    def __init__(
        self,
        subscription: Subscription,
        handler: Handler,
        *,
        group: str,
        tracer: trace.Tracer,
        dead_letters: DeadLetters,
        policy: FailurePolicy,
        instruments: KafkaInstruments | None = None,
    ) -> None:
        self._subscription = subscription
        self._topic = subscription.topics[0]
        self._handler = handler
        self._group = group
        self._tracer = tracer
        self._dead_letters = dead_letters
        self._policy = policy
        self._instruments = instruments
        self.gate = BatchGate(subscription.name)
        self.source: Any = None
        """FastStream's subscriber (its aiokafka consumer tells the partitions' ends)."""

    async def consume(self, records: Sequence[Record]) -> None:
        """Handle a batch: each key's records in order, keys concurrently."""
        if (select := self._subscription.select) is not None:
            records = [record for record in records if select(record)]
        async with self.gate.handling():
            await by_key(records, self.deliver)
        if self._instruments is not None and records:
            consumer = getattr(self.source, "consumer", None)
            self._instruments.consumed(records, group=self._group, consumer=consumer)

    async def deliver(self, record: Record) -> None:
        """One record, in its own span continuing the publisher's trace."""
        traced = self._subscription.traced
        with consumer_span(self._tracer, record, self._group, traced=traced) as span:
            for attempt in itertools.count(1):
                after_s = await self._attempt(record, span, attempt)
                if after_s is None:
                    return
                await asyncio.sleep(after_s)

    async def _attempt(self, record: Record, span: trace.Span, attempt: int) -> float | None:
        """Decode and handle ``record`` once; the pause before the next try, if any."""
        started = time.perf_counter()
        try:
            event = decode(self._topic, record)
            if workflow_id := getattr(event, "workflow_id", None):
                span.set_attribute(WORKFLOW_ID_ATTRIBUTE, str(workflow_id))
            await self._handler(event, record)
        except Exception as exc:
            self._measure(record, started, type(exc).__name__)
            if self._subscription.lenient and isinstance(exc, InvalidMessage):
                return None
            verdict = self._policy.verdict(exc, attempt=attempt)
            if isinstance(verdict, Reject):
                await self._dead_letters.reject(record, verdict, group=self._group)
                return None
            logger.exception("handler failed (attempt %d), will retry", attempt)
            return verdict.after_s
        self._measure(record, started, None)
        return None

    def _measure(self, record: Record, started: float, error: str | None) -> None:
        if self._instruments is not None:
            seconds = time.perf_counter() - started
            self._instruments.handled(record, group=self._group, seconds=seconds, error=error)


def subscribe(
    broker: KafkaBroker,
    subscription: Subscription,
    handler: Handler,
    *,
    settings: KitSettings,
    tracer: trace.Tracer,
    dead_letters: DeadLetters,
    policy: FailurePolicy,
    instruments: KafkaInstruments | None = None,
) -> None:
    """Register ``handler`` for ``subscription`` on ``broker``."""
    record_types = {topic.record_type for topic in subscription.topics}
    if len(record_types) != 1:
        raise ValueError(f"{subscription.name}: topics of one subscriber share a record type")
    group = consumer_group(settings, subscription.name)
    if subscription.per_instance:
        group = f"{group}.{uuid.uuid4().hex[:12]}"
    keyed = KeyedSubscriber(
        subscription,
        handler,
        group=group,
        tracer=tracer,
        dead_letters=dead_letters,
        policy=policy,
        instruments=instruments,
    )
    [record_type] = record_types
    keyed.source = broker.subscriber(
        *(topic.qualified(settings.topic_prefix) for topic in subscription.topics),
        group_id=group,
        auto_offset_reset="latest" if subscription.from_latest else "earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        batch=True,
        max_records=subscription.max_records,
        batch_timeout_ms=BATCH_IDLE_MS,
        listener=keyed.gate,
        decoder=_raw_records,
        title=f"{settings.service_name}:{subscription.name}",
        description=subscription.description or subscription.topics[0].description,
    )
    keyed.source(
        documented_batch_handler(
            record_type, keyed.consume, name=handler.__name__, doc=handler.__doc__
        )
    )


async def _raw_records(msg: KafkaMessage, _original: Any = None) -> Any:
    """A batch decoder handing the handler the records as they came."""
    return msg.raw_message
