"""The one way to consume: keyed batches.

A subscriber takes up to ``max_records`` messages at once and hands its handler one
message at a time, decoded against the topic's contract, with the record it came in.
Messages with the same Kafka key (the workflow id) are handled one after another in
offset order; different keys run concurrently. Offsets are committed once for the batch,
after every handler of a partition's records has returned, so an offset is never
committed before its message's effects are durable: a process killed mid-batch has
committed none of it, the batch is delivered again, and handlers, idempotent by event
id, change nothing twice. A rebalance waits for the batch in hand (``BatchGate``), so
the next owner of a partition never handles a message while this consumer still does.

A message that fails is put to the ``FailurePolicy`` (``pactmesh_kit.kafka.policy``).
Poison (undecodable, refused by its contract or its handler, too large) is dead-lettered
with its original bytes and the reason, and the consumer carries on. Any other failure
is an outage of a dependency: the message is retried in place with capped exponential
backoff for as long as it takes, while its partition is paused (no new work, nothing
committed; other partitions go on) and the service reports not ready (``stalls``); when
the dependency returns, the partition carries on where it stopped. A rebalance during
the outage abandons the retry and hands the partition over from its last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias, cast

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError
from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy
from opentelemetry import trace
from pactmesh_contracts.topics import Topic

from pactmesh_kit.errors import InvalidMessage
from pactmesh_kit.kafka._internal.batch import Batch, BatchGate, Record, by_key
from pactmesh_kit.kafka._internal.decoding import decode
from pactmesh_kit.kafka._internal.instruments import KafkaInstruments
from pactmesh_kit.kafka._internal.partitions import Partitions, PartitionWork, Stall, split
from pactmesh_kit.kafka._internal.schema import documented_batch_handler
from pactmesh_kit.kafka._internal.tracing import consumer_span
from pactmesh_kit.kafka.dead_letters import DeadLetters
from pactmesh_kit.kafka.policy import FailurePolicy, Reject, Retry
from pactmesh_kit.settings import KitSettings
from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE

__all__ = [
    "BATCH_IDLE_MS",
    "BATCH_MAX_RECORDS",
    "Handler",
    "KeyedSubscriber",
    "Record",
    "Stall",
    "Subscription",
]

logger = logging.getLogger(__name__)

BATCH_MAX_RECORDS = 256
"""Messages a subscriber takes at once: at most this many handlers run together."""
BATCH_IDLE_MS = 25
"""How long a subscriber's poll waits for a first message; a message arriving while it
waits is taken at once, and after an empty poll FastStream pauses as long, so an idle
hop adds at most this much latency."""
ABANDON_WAIT_S = 5.0
"""How long a revoked partition's cancelled work may take to stop."""

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
    max_bytes: int | None = None
    """A larger message is dead-lettered (``too_large``) undecoded; the service-wide
    ``max_message_bytes`` when unset."""
    wanted: asyncio.Event | None = None
    """While not set, nothing is fetched (the subscription's partitions are paused);
    once set, its partitions are moved to their ends and read from there. For a
    per-instance group from the latest offsets that feeds only what is being followed
    now (intake's live feed, while no client follows a request on this instance)."""


class Abandoned(Exception):
    """A message's retry is given up: the service is stopping (nothing of its partition
    is committed, so the next owner handles it)."""


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
        max_bytes: int,
        traced: bool = True,
        instruments: KafkaInstruments | None = None,
    ) -> None:
        """``traced``: a consumer span per message (none for records of the untraced
        topics, ``KitSettings.untraced_topics``)."""
        self._subscription = subscription
        self._traced = traced
        self._topic = subscription.topics[0]
        self._handler = handler
        self._group = group
        self._tracer = tracer
        self._dead_letters = dead_letters
        self._policy = policy
        self._max_bytes = subscription.max_bytes or max_bytes
        self._works: dict[TopicPartition, PartitionWork] = {}
        self._draining = False
        self.gate = BatchGate(subscription.name, abandon=self.abandon)
        self._instruments = instruments
        self.source: Any = None
        """FastStream's subscriber this one is registered as."""

    @property
    def name(self) -> str:
        """The subscription's name."""
        return self._subscription.name

    async def end_offsets(self) -> dict[TopicPartition, int] | None:
        """Where every partition of the subscription's topics ends now (committed records
        only), or None when its consumer cannot tell (not started, or FastStream's
        in-memory test broker's)."""
        consumer = getattr(self.source, "consumer", None)
        if consumer is None or not hasattr(consumer, "end_offsets"):
            return None
        tps = [
            TopicPartition(topic, partition)
            for topic in consumer.subscription()
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        return dict(await consumer.end_offsets(tps)) if tps else None

    async def handled_up_to(self, ends: dict[TopicPartition, int]) -> bool:
        """Whether this subscription's consumer group, all its instances together, has
        handled every record before ``ends`` (its committed offsets reach them: a record's
        offset is committed only once its handler's effects are durable)."""
        consumer = getattr(self.source, "consumer", None)
        if consumer is None:
            return False
        for tp, end in ends.items():
            if end > (await consumer.committed(tp) or 0):
                return False
        return True

    def stalls(self) -> list[Stall]:
        """The partitions taking no new work while a message of theirs is retried."""
        return [work.stall for work in self._works.values() if work.stall is not None]

    async def consume(self, batch: Batch) -> None:
        """Handle a batch: each partition's records as one work, each key's records in
        order, keys concurrently; commit every partition that finished, once."""
        if self._draining or not batch.records:
            return  # stopping: not handled, not committed, the next owner takes them
        if self._instruments is not None:
            self._instruments.consumed(batch.records, group=self._group, consumer=batch.consumer)
        partitions = Partitions(batch.consumer)
        works = [self._work(tp, records) for tp, records in split(batch.records).items()]
        async with self.gate.handling():
            if not partitions.can_pause:
                await self._in_place(works, partitions)
                return
            for work in works:
                work.start(lambda work: self._run(work, partitions))
            await asyncio.wait([work.settled for work in works])
            finished = [work for work in works if work.finished]
            for work in works:
                work.detached = work.running
            await partitions.commit({work.tp: work.next_offset for work in finished})
            for work in works:
                if not work.detached:
                    self._forget(work, partitions, handled=work.finished)

    def _work(self, tp: TopicPartition, records: list[Record]) -> PartitionWork:
        select = self._subscription.select
        chosen = records if select is None else [r for r in records if select(r)]
        work = PartitionWork(tp, chosen, next_offset=records[-1].offset + 1)
        self._works[tp] = work
        return work

    async def _in_place(self, works: list[PartitionWork], partitions: Partitions) -> None:
        """The batch handled right here, stalls waited out in place: for a consumer that
        cannot pause (FastStream's in-memory test broker, which runs a subscriber inside
        the publisher's call: its tests see a message handled once it is published)."""
        by_tp = {work.tp: work for work in works}

        async def deliver(record: Record) -> None:
            work = by_tp[TopicPartition(record.topic, record.partition)]
            await self.deliver(record, work, partitions)

        handled = False
        try:
            await by_key([r for work in works for r in work.records], deliver)
            handled = True
        finally:
            for work in works:
                self._forget(work, partitions, handled=handled)

    async def _run(self, work: PartitionWork, partitions: Partitions) -> None:
        await by_key(work.records, lambda record: self.deliver(record, work, partitions))
        if work.detached:  # the batch went on without it: commit and resume on its own
            await partitions.commit({work.tp: work.next_offset})
            self._forget(work, partitions, handled=True)

    def _forget(self, work: PartitionWork, partitions: Partitions, *, handled: bool) -> None:
        """Drop a work that ended; resume its partition if it stalled and then got
        every record handled (an abandoned one's partition is going away)."""
        if self._works.get(work.tp) is work:
            del self._works[work.tp]
        stall = work.recovered()
        if stall is not None and handled:
            partitions.resume(work.tp)
            logger.warning(
                "%s[%d] recovered: offset %d handled after %d attempts (%.1f s); the "
                "partition takes new work again",
                stall.topic,
                stall.partition,
                stall.offset,
                stall.attempts + 1,
                time.monotonic() - stall.since,
            )

    async def abandon(self, revoked: set[TopicPartition]) -> None:
        """Stop the works of ``revoked`` partitions (a rebalance took them away)."""
        works = [work for tp, work in self._works.items() if tp in revoked]
        for work in works:
            if work.stall is not None:
                logger.warning(
                    "%s[%d] revoked while retrying offset %d: the retry is abandoned and "
                    "the partition's next owner starts from its last commit",
                    work.tp.topic,
                    work.tp.partition,
                    work.stall.offset,
                )
            self._works.pop(work.tp, None)
        await asyncio.gather(*(work.cancel(wait_s=ABANDON_WAIT_S) for work in works))

    async def drain(self) -> None:
        """Stop taking batches and give up the retries in progress (the service stops);
        a batch in hand still finishes what it can and commits it."""
        self._draining = True
        detached = [work for work in self._works.values() if work.detached]
        await asyncio.gather(*(work.cancel(wait_s=ABANDON_WAIT_S) for work in detached))

    async def deliver(self, record: Record, work: PartitionWork, partitions: Partitions) -> None:
        """One record, in its own span continuing the publisher's trace (unless the
        subscription is untraced), tried until it is handled or dead-lettered; its
        partition paused while it is retried."""
        with consumer_span(self._tracer, record, self._group, traced=self._traced) as span:
            for attempt in itertools.count(1):
                retrying = await self._attempt(record, span, attempt=attempt)
                if retrying is None:
                    return
                self._failed(record, work, retrying, attempt=attempt)
                if self._draining:
                    raise Abandoned(f"{record.topic}[{record.partition}]@{record.offset}")
                partitions.pause(work.tp)
                await asyncio.sleep(retrying.after_s)

    async def _attempt(self, record: Record, span: trace.Span, *, attempt: int) -> Retrying | None:
        """Decode and handle ``record`` once, dead-lettering it if it is poison; what to
        retry, and when, if it failed otherwise."""
        started = time.perf_counter()
        try:
            event = self._decode(record)
            if workflow_id := getattr(event, "workflow_id", None):
                span.set_attribute(WORKFLOW_ID_ATTRIBUTE, str(workflow_id))
            await self._handler(event, record)
        except Exception as exc:
            self._measure(record, started, type(exc).__name__)
            if self._subscription.lenient and isinstance(exc, InvalidMessage):
                return None
            verdict = self._policy.verdict(exc, attempt=attempt)
            if isinstance(verdict, Retry):
                return Retrying(exc, verdict.after_s)
            return await self._dead_letter(record, verdict, attempt=attempt)
        self._measure(record, started, None)
        return None

    def _measure(self, record: Record, started: float, error: str | None) -> None:
        if self._instruments is not None:
            seconds = time.perf_counter() - started
            self._instruments.handled(record, group=self._group, seconds=seconds, error=error)

    async def _dead_letter(
        self, record: Record, verdict: Reject, *, attempt: int
    ) -> Retrying | None:
        try:
            await self._dead_letters.reject(record, verdict, group=self._group)
        except Exception as exc:  # the dead-letter topic unreachable: an outage like others
            return Retrying(exc, self._policy.backoff_s(attempt))
        return None

    def _decode(self, record: Record) -> Any:
        size = len(record.value or b"")
        if size > self._max_bytes:
            raise InvalidMessage(
                "too_large", f"{size} bytes, over this consumer's limit of {self._max_bytes}", []
            )
        return decode(self._topic, record)

    def _failed(
        self, record: Record, work: PartitionWork, retrying: Retrying, *, attempt: int
    ) -> None:
        """Mark the partition stalled and say so loudly: where, which event, why."""
        error = retrying.error
        stall = Stall(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            event_id=_event_id(record),
            since=work.stall.since if work.stall is not None else time.monotonic(),
            attempts=attempt,
            error=f"{type(error).__name__}: {error}",
        )
        work.stalled(stall)
        logger.error(
            "%s[%d]@%d (event %s, group %s) failed on attempt %d: %s; the partition takes "
            "no new work, retrying in %.1f s",
            record.topic,
            record.partition,
            record.offset,
            stall.event_id or "-",
            self._group,
            attempt,
            stall.error,
            retrying.after_s,
            exc_info=error if attempt == 1 or attempt % 20 == 0 else None,
        )


class Retrying(NamedTuple):
    """A failure to retry, and the pause before the next attempt."""

    error: Exception
    after_s: float


def _event_id(record: Record) -> str | None:
    """The event id of a record that may not decode (read from the raw JSON)."""
    try:
        value = json.loads(record.value or b"")
    except ValueError:
        return None
    found = value.get("event_id") if isinstance(value, dict) else None
    return str(found) if found is not None else None


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
) -> KeyedSubscriber:
    """Register ``handler`` for ``subscription`` on ``broker``.

    Offsets are committed by the subscriber itself (``AckPolicy.MANUAL``), per partition,
    so that a paused partition is never committed past the message it retries. Consumers
    read committed records only: a redrive (``pactmesh dlq``) that is aborted is never
    handled.
    """
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
        max_bytes=settings.max_message_bytes,
        traced=not all(topic.name in settings.untraced_topics for topic in subscription.topics),
        instruments=instruments,
    )
    [record_type] = record_types
    keyed.source = broker.subscriber(
        *(topic.qualified(settings.topic_prefix) for topic in subscription.topics),
        group_id=group,
        auto_offset_reset="latest" if subscription.from_latest else "earliest",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        ack_policy=AckPolicy.MANUAL,
        isolation_level="read_committed",
        batch=True,
        max_records=subscription.max_records,
        batch_timeout_ms=BATCH_IDLE_MS,
        listener=keyed.gate,
        decoder=_batch,
        title=f"{settings.service_name}:{subscription.name}",
        description=subscription.description or subscription.topics[0].description,
    )
    if settings.kafka_idle_poll_ms or subscription.wanted is not None:
        _poll(keyed.source, wait_ms=settings.kafka_idle_poll_ms, wanted=subscription.wanted)
    keyed.source(
        documented_batch_handler(
            record_type, keyed.consume, name=handler.__name__, doc=handler.__doc__
        )
    )
    return keyed


async def _batch(msg: KafkaMessage, _original: Any = None) -> Batch:
    """A batch decoder handing the handler the records as they came, and the consumer."""
    return Batch(records=msg.raw_message, consumer=msg.consumer)


def _poll(source: Any, *, wait_ms: int, wanted: asyncio.Event | None) -> None:
    """Make ``source`` (FastStream's batch subscriber) wait up to ``wait_ms`` for records
    (FastStream's own poll when 0), and fetch nothing while ``wanted`` is not set.

    FastStream's batch loop polls for ``batch_timeout_ms`` and, after an empty poll,
    sleeps as long again: with the 25 ms the mesh needs for a quick hop, every idle
    subscriber woke 40 times a second (some 30 subscribers in the mesh; its idle CPU in
    docs/benchmarks.md), and a record arriving during the sleep waited for it. aiokafka's
    ``getmany`` returns as soon as a record is fetched, so one long wait costs nothing in
    latency. FastStream has no option for this, hence the replaced method. An empty
    answer well before the wait is up (a rebalance, a stopping consumer) still gets the
    short pause, so nothing can spin.

    A live group that no one wants still fetched every record of its topics and skipped
    them one by one: intake's two, some 7 records per workflow, cost it 0.3 of its 3.1
    CPU ms per workflow (docs/benchmarks.md). ``wanted`` pauses it instead.
    """
    max_records = source.max_records
    fetch = source.get_msg
    unwanted: set[TopicPartition] = set()
    """The partitions paused here while the subscription was not wanted (not those a
    stalled message paused)."""

    async def get_msg(consumer: Any) -> tuple[Any, ...]:
        if wanted is not None:
            if not wanted.is_set():
                await _until_wanted(consumer, wanted, wait_ms or BATCH_IDLE_MS, unwanted)
                return ()
            if unwanted:
                await _from_the_end(consumer, unwanted)
        if not wait_ms:
            return cast(tuple[Any, ...], await fetch(consumer))
        loop = asyncio.get_running_loop()
        started = loop.time()
        fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=max_records)
        if fetched:
            return tuple(itertools.chain.from_iterable(fetched.values()))
        if loop.time() - started < wait_ms / 2000:
            await asyncio.sleep(BATCH_IDLE_MS / 1000)
        return ()

    source.get_msg = get_msg


async def _until_wanted(
    consumer: Any, wanted: asyncio.Event, wait_ms: int, unwanted: set[TopicPartition]
) -> None:
    """Pause every assigned partition (adding it to ``unwanted``) and wait up to
    ``wait_ms`` or until ``wanted`` is set.

    Paused each time: a rebalance may have assigned new ones. An empty poll is made,
    which counts as one for the group: a consumer that does not poll for
    ``max_poll_interval_ms`` leaves it."""
    assigned = consumer.assignment()
    with contextlib.suppress(IllegalStateError):
        consumer.pause(*assigned)
        unwanted.update(assigned)
    await consumer.getmany(timeout_ms=0)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wanted.wait(), wait_ms / 1000)


async def _from_the_end(consumer: Any, unwanted: set[TopicPartition]) -> None:
    """Move the ``unwanted`` partitions still assigned to their ends and resume them
    (what was written while no one wanted it is not read); a seek that fails (the
    partition revoked meanwhile) still resumes it."""
    partitions = unwanted & consumer.assignment()
    unwanted.clear()
    if not partitions:
        return
    with contextlib.suppress(IllegalStateError):
        await consumer.seek_to_end(*partitions)
    for tp in partitions:
        with contextlib.suppress(IllegalStateError):
            consumer.resume(tp)
