"""Dead letters for operators: list, show and redrive them (``pactmesh dlq``).

Reading scans the dead-letter topic from its start to its end (a DLQ is small, and a
scan needs no consumer group), keeping the records that pass the filters (service,
reason, source topic, time).

Redriving publishes a dead letter's original message again, with its original key and
headers, on its source topic, where every consumer group reads it afresh. It is
idempotent: with the republished message, a marker keyed by the original's position
(``topic/partition/offset``) goes to the compacted ``dlq.redriven`` topic, in the same
Kafka transaction, and a position already marked is never redriven again. Several
redrives at once are safe: they share one transactional id, so the latest to start
fences the others (their open transaction is aborted, their next one refused) and
reads, after that, every marker they committed. Consumers read committed records
only, so an aborted redrive is never handled.

An original too large to be kept whole in its dead letter (``original_truncated``) is
read back from its source position, checked against its SHA-256, and republished from
there; one the source topic no longer retains cannot be redriven, and is reported.
"""

from __future__ import annotations

import base64
import getpass
import logging
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import IllegalOperation, KafkaError, ProducerFenced
from pactmesh_contracts.events import DeadLetter, DeadLetterRedriven
from pactmesh_contracts.topics import DEAD_LETTERS, DEAD_LETTERS_REDRIVEN
from pydantic import ValidationError

from pactmesh_kit.kafka.clients import client_options
from pactmesh_kit.settings import KitSettings

logger = logging.getLogger(__name__)

REDRIVEN_FROM = "pactmesh-redriven-from"
"""Header added to a redriven message: the position of the message it repeats."""
TRANSACTION_SIZE = 100
"""Dead letters redriven per Kafka transaction."""
FETCH_TIMEOUT_S = 10.0

_RELATIVE = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """``2025-01-31T12:00:00+00:00`` (naive means UTC), or a time ago: ``30m``, ``2h``,
    ``7d``."""
    if match := _RELATIVE.match(text.strip()):
        amount, unit = int(match[1]), _UNITS[match[2]]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    when = datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    """Which dead letters a command is about; empty fields match everything."""

    services: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()
    """Qualified (``pactmesh.tool.results``) or logical (``tool.results``) names."""
    since: datetime | None = None
    until: datetime | None = None

    def match(self, letter: DeadLetter, *, prefix: str) -> bool:
        """Whether ``letter`` passes every filter."""
        topics = self.source_topics | {f"{prefix}{t}" for t in self.source_topics}
        return (
            (not self.services or letter.service in self.services)
            and (not self.reasons or letter.error_code in self.reasons)
            and (not topics or letter.source_topic in topics)
            and (self.since is None or letter.occurred_at >= self.since)
            and (self.until is None or letter.occurred_at < self.until)
        )


@dataclass(frozen=True)
class Found:
    """A dead letter and where it sits on the dead-letter topic."""

    letter: DeadLetter
    partition: int
    offset: int


@dataclass
class Outcome:
    """What a redrive did."""

    redriven: list[DeadLetter] = field(default_factory=list)
    already: list[DeadLetter] = field(default_factory=list)
    """Skipped: their original was redriven before (a marker exists)."""
    failed: list[tuple[DeadLetter, str]] = field(default_factory=list)
    """Not redriven, with why (an original the source topic no longer holds)."""


def _client(settings: KitSettings) -> dict[str, Any]:
    """Connection options of the aiokafka clients used here."""
    return client_options(settings, client_id="pactmesh-dlq")


async def _scan(
    settings: KitSettings, topic: str, on_record: Callable[[ConsumerRecord[Any, Any]], None]
) -> None:
    """Hand every committed record of ``topic``, from its start to its current end, to
    ``on_record``."""
    partitions = await partitions_of(settings, topic)
    consumer = AIOKafkaConsumer(
        **_client(settings), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            for records in (await consumer.getmany(*remaining, timeout_ms=500)).values():
                for record in records:
                    on_record(record)
            remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()


async def partitions_of(settings: KitSettings, topic: str) -> list[TopicPartition]:
    """The partitions of ``topic`` (``LookupError`` when there is no such topic)."""
    admin = AIOKafkaAdminClient(**_client(settings))
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if described["error_code"] != 0:
        raise LookupError(f"no topic {topic} (is PACTMESH_TOPIC_PREFIX right?)")
    return [TopicPartition(topic, p["partition"]) for p in described["partitions"]]


async def dead_letters(settings: KitSettings, filters: Filters) -> list[Found]:
    """The dead letters passing ``filters``, oldest first per partition."""
    found: list[Found] = []

    def keep(record: ConsumerRecord[Any, Any]) -> None:
        try:
            letter = DeadLetter.model_validate_json(record.value or b"")
        except ValidationError:
            logger.warning("dlq[%d]@%d is not a dead letter", record.partition, record.offset)
            return
        if filters.match(letter, prefix=settings.topic_prefix):
            found.append(Found(letter, record.partition, record.offset))

    await _scan(settings, DEAD_LETTERS.qualified(settings.topic_prefix), keep)
    return found


async def redriven(settings: KitSettings) -> set[str]:
    """Positions (``DeadLetter.source_ref``) whose original was redriven already."""
    marks: set[str] = set()

    def mark(record: ConsumerRecord[Any, Any]) -> None:
        if record.key is not None and record.value is not None:  # a tombstone unmarks
            marks.add(record.key.decode())

    await _scan(settings, DEAD_LETTERS_REDRIVEN.qualified(settings.topic_prefix), mark)
    return marks


async def find(settings: KitSettings, ident: str) -> list[Found]:
    """Dead letters whose id is ``ident``, or whose original sits at ``ident``
    (``topic/partition/offset``)."""
    every = await dead_letters(settings, Filters())
    return [f for f in every if ident in (str(f.letter.dead_letter_id), f.letter.source_ref)]


def _recorded_failure(producer: AIOKafkaProducer) -> BaseException | None:
    """What ended ``producer``'s transaction under it, when the sender recorded it.

    aiokafka's sender records a fence seen mid-transaction (``ProducerFenced``) on the
    transaction and moves it to its fatal state; the next ``send`` then raises
    ``IllegalOperation("Can't send messages while not in transaction")``, not the fence.
    The recorded failure is what happened, so it is what the caller gets. Private state
    of aiokafka (as its own ``TransactionContext`` reads it): no public accessor exists.
    """
    ended = producer._txn_manager.wait_for_transaction_end()
    if ended is None or not ended.done() or ended.cancelled():
        return None
    failure: BaseException | None = ended.exception()
    return failure


class TakenOver(Exception):
    """Another redrive started and fenced this one; what this one committed stays."""


class Redrive:
    """One redrive run: a transactional producer (fencing any other run), the markers
    read after fencing, and the originals published in transactions with their marker."""

    def __init__(self, settings: KitSettings) -> None:
        self._settings = settings
        self._marker_topic = DEAD_LETTERS_REDRIVEN.qualified(settings.topic_prefix)
        self._by = f"{getpass.getuser()}@{socket.gethostname()}"
        self._producer = AIOKafkaProducer(
            **_client(settings),
            transactional_id=f"{settings.topic_prefix}dlq-redrive",
            enable_idempotence=True,
            acks="all",
            max_request_size=max(settings.max_message_bytes, 1_048_576) * 4,
        )
        self._sources: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> Redrive:
        await self._producer.start()  # init_transactions: fences an earlier run
        return self

    async def __aexit__(self, *_exc: object) -> None:
        try:
            await self._producer.stop()
        except KafkaError:  # fenced: nothing of ours is left open on the broker
            logger.debug("stopping a fenced producer", exc_info=True)
        if self._sources is not None:
            await self._sources.stop()

    async def run(
        self, found: Sequence[Found], *, progress: Callable[[int], object] = lambda _n: None
    ) -> Outcome:
        """Redrive the originals of ``found`` not redriven before (one per position)."""
        outcome = Outcome()
        marked = await redriven(self._settings)
        todo: list[DeadLetter] = []
        for letter in _first_per_position(f.letter for f in found):
            if letter.source_ref in marked:
                outcome.already.append(letter)
                progress(1)
            else:
                todo.append(letter)
        for start in range(0, len(todo), TRANSACTION_SIZE):
            chunk = todo[start : start + TRANSACTION_SIZE]
            try:
                await self._transaction(chunk, outcome)
            except ProducerFenced as exc:
                raise TakenOver(
                    f"another redrive started; this one stopped after {len(outcome.redriven)}"
                ) from exc
            progress(len(chunk))
        return outcome

    async def _transaction(self, letters: Sequence[DeadLetter], outcome: Outcome) -> None:
        ready: list[tuple[DeadLetter, ConsumerRecord[Any, Any] | None]] = []
        for letter in letters:
            source, why = await self._source_of(letter)
            if why is not None:
                outcome.failed.append((letter, why))
            else:
                ready.append((letter, source))
        if not ready:
            return
        try:
            async with self._producer.transaction():
                for letter, source in ready:
                    await self._send(letter, source)
        except IllegalOperation as exc:
            raise _recorded_failure(self._producer) or exc from exc
        outcome.redriven.extend(letter for letter, _ in ready)

    async def _send(self, letter: DeadLetter, source: ConsumerRecord[Any, Any] | None) -> None:
        """Queue the original and its marker in the open transaction."""
        ref = letter.source_ref
        if source is not None:
            key, value, headers = source.key, source.value, list(source.headers or ())
        else:
            key, value = _decoded(letter.original_key_b64), letter.original_value()
            headers = [(k, v.encode()) for k, v in letter.original_headers.items()]
        headers = [(k, v) for k, v in headers if k != REDRIVEN_FROM]
        headers.append((REDRIVEN_FROM, ref.encode()))
        await self._producer.send(letter.source_topic, value, key=key, headers=headers)
        marker = DeadLetterRedriven(
            dead_letter_id=letter.dead_letter_id,
            source_topic=letter.source_topic,
            source_partition=letter.source_partition,
            source_offset=letter.source_offset,
            redriven_by=self._by,
        )
        await self._producer.send(
            self._marker_topic, marker.model_dump_json().encode(), key=ref.encode()
        )

    async def _source_of(
        self, letter: DeadLetter
    ) -> tuple[ConsumerRecord[Any, Any] | None, str | None]:
        """The original record from its source topic when the letter holds only its head
        (or ``None``: the letter holds it whole); else why it cannot be redriven."""
        if not letter.original_truncated:
            return None, None
        record = await self._fetch(letter)
        if record is None:
            return None, "the source topic no longer holds the original"
        if letter.original_sha256 and sha256(record.value or b"").hexdigest() != (
            letter.original_sha256
        ):
            return None, "the record at the source position is not the original (SHA-256)"
        return record, None

    async def _fetch(self, letter: DeadLetter) -> ConsumerRecord[Any, Any] | None:
        if self._sources is None:
            self._sources = AIOKafkaConsumer(
                **_client(self._settings),
                enable_auto_commit=False,
                isolation_level="read_committed",
                fetch_max_bytes=64 * 1_048_576,
                max_partition_fetch_bytes=64 * 1_048_576,
            )
            await self._sources.start()
        tp = TopicPartition(letter.source_topic, letter.source_partition)
        self._sources.assign([tp])
        beginning = (await self._sources.beginning_offsets([tp]))[tp]
        if letter.source_offset < beginning:
            return None
        self._sources.seek(tp, letter.source_offset)
        batch = await self._sources.getmany(tp, timeout_ms=int(FETCH_TIMEOUT_S * 1000))
        records = [r for r in batch.get(tp, []) if r.offset == letter.source_offset]
        return records[0] if records else None


def _first_per_position(letters: Iterable[DeadLetter]) -> list[DeadLetter]:
    """One letter per original position (several groups may dead-letter one message)."""
    seen: dict[str, DeadLetter] = {}
    for letter in letters:
        seen.setdefault(letter.source_ref, letter)
    return list(seen.values())


def _decoded(b64: str | None) -> bytes | None:
    return None if b64 is None else base64.b64decode(b64)
