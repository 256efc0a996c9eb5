"""Outages pause a partition instead of dead-lettering: the keyed subscriber driven with a
stand-in for aiokafka's consumer (pause, resume, commit, assignment), batch by batch.

What these pin down: a message whose handler fails (not poison) is retried with backoff
while its partition is paused and not committed; the batch's other partitions commit at
once; the stalled partition commits and resumes when the dependency returns; a rebalance
abandons the retry (nothing committed, nothing handled after) within a bound; shutdown
takes no new batch; a dead letter that cannot be published is retried, not lost.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord, TopicPartition
from opentelemetry import trace
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import Channel, RequestAccepted
from pactmesh_contracts.topics import REQUESTS_ACCEPTED
from pactmesh_kit.errors import RefusedMessage
from pactmesh_kit.kafka import FailurePolicy, Reject
from pactmesh_kit.kafka._internal.batch import Batch, Record
from pactmesh_kit.kafka.subscriber import KeyedSubscriber, Subscription

TOPIC = "parts.requests.accepted"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class DependencyDown(Exception):
    """A handler's database is unreachable."""


@dataclass
class Consumer:
    """What the subscriber drives of aiokafka's consumer, recorded."""

    assigned: set[TopicPartition] = field(default_factory=lambda: {P0, P1})
    paused: set[TopicPartition] = field(default_factory=set)
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def committed(self, tp: TopicPartition) -> int | None:
        found = [c[tp] for c in self.commits if tp in c]
        return max(found) if found else None


@dataclass
class DeadLetters:
    """Records rejections; ``failures`` makes the first publishes fail (broker down)."""

    rejected: list[tuple[int, str]] = field(default_factory=list)
    failures: int = 0

    async def reject(self, record: Record, verdict: Reject, *, group: str) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("dead-letter topic unreachable")
        self.rejected.append((record.offset, verdict.code))


@dataclass
class Handler:
    """Records what it handled; texts in ``down`` fail while ``outage`` holds."""

    outage: bool = True
    down: set[str] = field(default_factory=lambda: {"fails"})
    calls: list[str] = field(default_factory=list)
    handled: list[str] = field(default_factory=list)

    async def __call__(self, event: Envelope[RequestAccepted], record: Record) -> None:
        text = event.payload.text
        self.calls.append(text)
        if text == "refused":
            raise RefusedMessage("not allowed")
        if self.outage and text in self.down:
            raise DependencyDown("database unreachable")
        self.handled.append(text)


def _subscriber(handler: Handler, dead: DeadLetters | None = None) -> KeyedSubscriber:
    return KeyedSubscriber(
        Subscription(topics=(REQUESTS_ACCEPTED,), name="requests.accepted"),
        handler,
        group="parts.group",
        tracer=trace.get_tracer("test"),
        dead_letters=dead or DeadLetters(),  # type: ignore[arg-type]
        policy=FailurePolicy(backoff_initial_s=0.01, backoff_max_s=0.05),
        max_bytes=1_000_000,
    )


def _record(tp: TopicPartition, offset: int, text: str, key: bytes) -> Record:
    event = new_event(
        RequestAccepted(text=text, channel=Channel.HTTP),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="u"),
    )
    value = event.model_dump_json().encode()
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, key, value, None, 1, 1, ())


async def _until(condition: Callable[[], object], within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_a_stalled_partition_is_paused_while_the_batch_commits_the_others() -> None:
    handler, consumer = Handler(), Consumer()
    subscriber = _subscriber(handler)
    batch = [_record(P0, 10, "fails", b"a"), _record(P1, 20, "fine", b"b")]

    await asyncio.wait_for(subscriber.consume(Batch(batch, consumer)), timeout=5)

    assert consumer.commits == [{P1: 21}], "the healthy partition, at once; not the stalled"
    assert consumer.paused == {P0}
    [stall] = subscriber.stalls()
    assert (stall.topic, stall.partition, stall.offset) == (TOPIC, 0, 10)
    assert stall.event_id == json.loads(batch[0].value)["event_id"]
    assert stall.error == "DependencyDown: database unreachable"

    await _until(lambda: handler.calls.count("fails") >= 3)  # retried with backoff
    assert consumer.committed(P0) is None
    handler.outage = False  # the database is back
    await _until(lambda: consumer.committed(P0) == 11)
    assert consumer.paused == set(), "resumed: the partition takes new work again"
    assert subscriber.stalls() == []
    assert handler.handled == ["fine", "fails"]


async def test_the_stalled_keys_later_messages_wait_and_other_keys_go_on_uncommitted() -> None:
    handler, consumer = Handler(), Consumer()
    subscriber = _subscriber(handler)
    batch = [
        _record(P0, 1, "fails", b"a"),
        _record(P0, 2, "after", b"a"),
        _record(P0, 3, "other key", b"c"),
    ]

    await subscriber.consume(Batch(batch, consumer))
    await _until(lambda: "other key" in handler.handled)

    assert "after" not in handler.calls, "a key's messages stay in order"
    assert consumer.commits == []
    handler.outage = False
    await _until(lambda: consumer.committed(P0) == 4)
    assert handler.handled == ["other key", "fails", "after"]


async def test_a_rebalance_abandons_a_retry_and_commits_nothing_of_its_partition() -> None:
    handler, consumer = Handler(), Consumer()
    subscriber = _subscriber(handler)
    await subscriber.consume(Batch([_record(P0, 5, "fails", b"a")], consumer))
    await _until(lambda: handler.calls.count("fails") >= 2)

    started = time.monotonic()
    await asyncio.wait_for(subscriber.gate.on_partitions_revoked({P0}), timeout=5)

    assert time.monotonic() - started < 1.0, "a stalled partition never holds the rebalance"
    assert subscriber.stalls() == []
    attempts = len(handler.calls)
    handler.outage = False
    await asyncio.sleep(0.2)
    assert len(handler.calls) == attempts, "nothing handled after the partition was revoked"
    assert consumer.commits == []


async def test_a_rebalance_waits_for_a_healthy_batch_in_hand() -> None:
    consumer = Consumer()
    release = asyncio.Event()
    finished: list[str] = []

    async def slow(event: Envelope[RequestAccepted], record: Record) -> None:
        await release.wait()
        finished.append(event.payload.text)

    subscriber = _subscriber(Handler())
    subscriber._handler = slow  # type: ignore[assignment]
    consuming = asyncio.create_task(
        subscriber.consume(Batch([_record(P0, 1, "slow", b"a")], consumer))
    )
    await asyncio.sleep(0.05)
    revoking = asyncio.create_task(subscriber.gate.on_partitions_revoked({P0}))
    await asyncio.sleep(0.05)
    assert not revoking.done(), "the rebalance waits for the batch in hand"
    release.set()
    await asyncio.wait_for(asyncio.gather(consuming, revoking), timeout=5)
    assert finished == ["slow"]
    assert consumer.commits == [{P0: 2}]


async def test_a_partition_revoked_before_its_batch_commits_is_not_committed() -> None:
    handler, consumer = Handler(down=set()), Consumer(assigned={P1})
    await _subscriber(handler).consume(
        Batch([_record(P0, 1, "mine no more", b"a"), _record(P1, 2, "mine", b"b")], consumer)
    )
    assert consumer.commits == [{P1: 3}]


async def test_shutdown_takes_no_new_batch_and_gives_up_retries() -> None:
    handler, consumer = Handler(), Consumer()
    subscriber = _subscriber(handler)
    await subscriber.consume(Batch([_record(P0, 1, "fails", b"a")], consumer))
    await _until(lambda: subscriber.stalls())

    await asyncio.wait_for(subscriber.drain(), timeout=5)
    await subscriber.consume(Batch([_record(P1, 7, "fine", b"b")], consumer))

    attempts = len(handler.calls)
    await asyncio.sleep(0.1)
    assert len(handler.calls) == attempts, "the retry was given up"
    assert "fine" not in handler.calls, "no new batch"
    assert consumer.commits == []


async def test_poison_is_dead_lettered_and_committed_at_once() -> None:
    dead = DeadLetters()
    handler, consumer = Handler(down=set()), Consumer()
    batch = [_record(P0, 1, "refused", b"a"), _record(P0, 2, "next", b"a")]
    await _subscriber(handler, dead).consume(Batch(batch, consumer))
    assert dead.rejected == [(1, "refused")]
    assert handler.handled == ["next"]
    assert consumer.commits == [{P0: 3}]


async def test_a_dead_letter_the_broker_does_not_take_is_retried_not_lost() -> None:
    dead = DeadLetters(failures=3)
    handler, consumer = Handler(down=set()), Consumer()
    subscriber = _subscriber(handler, dead)
    batch = [_record(P0, 1, "refused", b"a"), _record(P0, 2, "next", b"a")]

    await subscriber.consume(Batch(batch, consumer))
    await _until(lambda: consumer.committed(P0) == 3)

    assert dead.rejected == [(1, "refused")]
    assert handler.handled == ["next"]
    assert handler.calls.count("refused") == 4


async def test_an_undecodable_record_is_dead_lettered_and_its_partition_goes_on() -> None:
    handler, consumer, dead = Handler(down=set()), Consumer(), DeadLetters()
    raw = ConsumerRecord(TOPIC, 0, 1, 0, 0, b"a", b"not json", None, 1, 1, ())
    await _subscriber(handler, dead).consume(Batch([raw, _record(P0, 2, "fine", b"a")], consumer))
    assert dead.rejected == [(1, "undecodable")]
    assert handler.handled == ["fine"]
    assert consumer.commits == [{P0: 3}]


class Polled:
    """A stand-in for aiokafka's ``getmany``: answers in order, each after its delay."""

    def __init__(self, *answers: tuple[float, dict[TopicPartition, list[str]]]) -> None:
        self.answers = list(answers)
        self.timeouts: list[int] = []

    async def getmany(
        self, *, timeout_ms: int, max_records: int
    ) -> dict[TopicPartition, list[str]]:
        self.timeouts.append(timeout_ms)
        delay, answer = self.answers.pop(0)
        await asyncio.sleep(delay)  # the consumer's own wait, simulated
        return answer


def test_an_idle_subscriber_waits_long_and_takes_a_record_at_once() -> None:
    """The long poll (``PACTMESH_KAFKA_IDLE_POLL_MS``): one wait of the whole idle time
    instead of FastStream's 25 ms poll and 25 ms pause; records returned as they come;
    only an empty answer well before the wait is up gets the short pause."""
    from pactmesh_kit.kafka.subscriber import BATCH_IDLE_MS, _poll

    class Source:
        max_records = 7

        async def get_msg(self, consumer: object) -> tuple[str, ...]:
            raise AssertionError("FastStream's own poll is not used with a long poll")

    source = Source()
    _poll(source, wait_ms=400, wanted=None)
    consumer = Polled((0.0, {P0: ["a", "b"], P1: ["c"]}), (0.3, {}), (0.0, {}))

    async def polls() -> list[tuple[tuple[str, ...], float]]:
        taken = []
        for _ in range(3):
            started = time.monotonic()
            got = await source.get_msg(consumer)  # type: ignore[attr-defined]
            taken.append((got, time.monotonic() - started))
        return taken

    [(first, _), (second, slow), (third, early)] = asyncio.run(polls())
    assert consumer.timeouts == [400, 400, 400]
    assert (first, second, third) == (("a", "b", "c"), (), ())
    assert slow < 0.3 + BATCH_IDLE_MS / 1000, "no pause after an empty wait past half its time"
    assert early >= BATCH_IDLE_MS / 1000, "an early empty answer is paused on"
