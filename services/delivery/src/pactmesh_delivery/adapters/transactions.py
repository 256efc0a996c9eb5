"""Results published exactly once: each in a Kafka transaction, prepared in the ledger
while that transaction is open.

Publishing a result and remembering that it was published are two writes to two
systems; a process killed between them either forgets a result it published (and its
successor publishes it again: a duplicate on the result topic) or remembers one it never
published (a loss). Kafka's transactions close that gap without a second coordinator:

1. the result, its ``delivered`` progress event and its audit record are sent in one
   Kafka transaction; Kafka answers with the result's partition and offset;
2. the ledger *prepares* the workflow's entry with that position, in one database
   transaction for every result of the batch (the primary key lets only one instance
   prepare a workflow: a lost race aborts the Kafka transaction);
3. the Kafka transaction commits; then the entries are *settled*.

Whoever finds an entry prepared but not settled (the process died between 2 and 3, or
3's answer was lost) asks Kafka, which decided: it reads the result's position with
``read_committed``. A committed result is there (settle it); an aborted one is skipped
by the reader, whose position passes it (forget the entry, publish again). An open
transaction holds the reader back until the coordinator aborts it
(``result_transaction_timeout_s``); until then the completion is retried, not guessed.

Every reader of results, progress and audit must read ``read_committed`` (the mesh's
subscribers, the Python client and the tests do): an aborted transaction's records stay
in the log, invisible only to such readers.

Written by hand rather than with a library: Kafka's consume-transform-produce pattern
(``send_offsets_to_transaction``) would commit the completion's offset with the result,
but the mesh's subscriber commits offsets per partition once every key of a batch is
done, concurrently across keys; one producer's transactions cannot follow that. The
ledger already holds what a commit of offsets would, per workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from opentelemetry import trace
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.topics import topic_for
from pactmesh_kit.errors import NotReady
from pactmesh_kit.kafka import JSON_HEADERS
from pactmesh_kit.kafka._internal.tracing import PROPAGATOR, TRACER_NAME
from pactmesh_kit.kafka.clients import client_options

from pactmesh_delivery.domain.results import Ledger, LedgerEntry, Outgoing
from pactmesh_delivery.settings import Settings

logger = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


@dataclass
class _Queued:
    outgoing: Outgoing
    headers: Headers
    """The trace context of the handler that queued it (records carry their request's
    trace, whichever batch they travel in)."""
    done: asyncio.Future[bool] = field(default_factory=lambda: _loop().create_future())


class _Taken(Exception):
    """Another transaction prepared these workflows first."""

    def __init__(self, workflow_ids: Sequence[uuid.UUID]) -> None:
        super().__init__(f"{len(workflow_ids)} result(s) prepared elsewhere")
        self.workflow_ids = set(workflow_ids)


class ResultTransactions:
    """Publishes results in Kafka transactions, each batch prepared in ``ledger``."""

    def __init__(self, settings: Settings, ledger: Ledger) -> None:
        self._settings = settings
        self._ledger = ledger
        self._prefix = settings.topic_prefix
        self._tracer = trace.get_tracer(TRACER_NAME)
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue()
        self._producer: AIOKafkaProducer | None = None
        self._worker: asyncio.Task[None] | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._reading = asyncio.Lock()

    # -- what handlers call ---------------------------------------------------------------

    async def published(self, workflow_id: uuid.UUID) -> bool:
        """Whether this workflow's result is on its topic (a prepared entry is settled or
        forgotten first, as Kafka decided its transaction)."""
        entry = await self._ledger.entry(workflow_id)
        if entry is None:
            return False
        if entry.settled:
            return True
        if await self.committed(entry):
            await self._ledger.settle([workflow_id])
            return True
        await self._ledger.forget(entry)
        return False

    async def publish(self, outgoing: Outgoing) -> bool:
        """Publish ``outgoing`` unless its result is already out; whether this call did.

        Not asked of the ledger first (the handler asked ``published`` before checking
        the completion): a result already prepared makes its transaction's ``prepare``
        fail, which aborts it, and then ``published`` says what the other came to."""
        for _ in range(3):
            queued = self._queued(outgoing)
            self._queue.put_nowait(queued)
            self._ensure_worker()
            if await queued.done:
                return True
            if await self.published(outgoing.workflow_id):
                return False
        raise NotReady(f"the result of {outgoing.workflow_id} is contended; retrying")

    async def close(self) -> None:
        """Stop the worker (queued results fail: their handlers retry) and the clients."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while not self._queue.empty():
            _fail([self._queue.get_nowait()], NotReady("delivery is stopping"))
        await self._drop_producer()
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    # -- deciding a prepared entry ----------------------------------------------------------

    async def committed(self, entry: LedgerEntry) -> bool:
        """Whether the transaction that prepared ``entry`` committed: its result is at its
        position for a read-committed reader; an aborted one is skipped. Raises
        ``NotReady`` while the transaction is still open past the coordinator's bound."""
        if entry.partition is None or entry.offset is None:
            return False  # prepared without a position: never written by this module
        tp = TopicPartition(f"{self._prefix}{entry.topic}", entry.partition)
        deadline = time.monotonic() + self._settings.result_transaction_timeout_s + 15
        async with self._reading:
            reader = await self._open_reader()
            reader.assign([tp])
            reader.resume(tp)  # paused after the last question, if it was about this one
            reader.seek(tp, entry.offset)
            while time.monotonic() < deadline:
                found = await reader.getmany(tp, timeout_ms=500, max_records=1)
                for record in found.get(tp, []):
                    reader.pause(tp)
                    return record.offset == entry.offset and _event_id(record.value) == str(
                        entry.event_id
                    )
                if await reader.position(tp) > entry.offset:
                    reader.pause(tp)
                    return False
            reader.pause(tp)  # no fetching in the background until the next question
        raise NotReady(f"the transaction of {entry.workflow_id}'s result is still open")

    async def _open_reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            options = client_options(self._settings, client_id="delivery-results-check")
            reader = AIOKafkaConsumer(
                **options, isolation_level="read_committed", enable_auto_commit=False
            )
            await reader.start()
            self._reader = reader
        return self._reader

    # -- the transactions ---------------------------------------------------------------

    def _queued(self, outgoing: Outgoing) -> _Queued:
        with self._tracer.start_as_current_span(
            f"{outgoing.topic.qualified(self._prefix)} publish",
            kind=trace.SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation": "publish",
                "messaging.destination.name": outgoing.topic.qualified(self._prefix),
            },
        ):
            carrier: dict[str, str] = {}
            PROPAGATOR.inject(carrier)
        return _Queued(outgoing, [(k, v.encode()) for k, v in carrier.items()])

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="result-transactions")

    async def _work(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._settings.result_transaction_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [q for q in batch if not q.done.done()]
            if not batch:
                continue
            try:
                await self._transaction(batch)
            except _Taken as taken:
                self._after_taken(batch, taken.workflow_ids)
            except asyncio.CancelledError:  # stopping: the handlers retry elsewhere
                _fail(batch, NotReady("delivery is stopping"))
                raise
            except Exception as exc:  # an outage: every handler retries its completion
                logger.warning("a transaction of %d result(s) failed: %r", len(batch), exc)
                _fail(batch, exc)
                await self._drop_producer()

    def _after_taken(self, batch: list[_Queued], taken: set[uuid.UUID]) -> None:
        """The transaction was aborted: the contested results go back to their handlers
        (which ask what the other transaction came to), the others go again."""
        for queued in batch:
            if queued.outgoing.workflow_id in taken:
                queued.done.set_result(False)
            else:
                self._queue.put_nowait(queued)

    async def _transaction(self, batch: list[_Queued]) -> None:
        producer = await self._open_producer()
        async with producer.transaction():  # aborted if anything below raises
            sent = [await self._send(producer, queued) for queued in batch]
            positions = await asyncio.gather(*sent)
            entries = [
                LedgerEntry(
                    workflow_id=q.outgoing.workflow_id,
                    topic=q.outgoing.topic.name,
                    event_id=q.outgoing.result.event_id,
                    partition=meta.partition,
                    offset=meta.offset,
                )
                for q, meta in zip(batch, positions, strict=True)
            ]
            taken = await self._ledger.prepare(entries)
            if taken:
                raise _Taken(taken)
        try:
            await self._ledger.settle([q.outgoing.workflow_id for q in batch])
        except Exception:  # published all the same: a later reader settles from Kafka
            logger.warning("could not settle %d published result(s)", len(batch), exc_info=True)
        for queued in batch:
            queued.done.set_result(True)

    async def _send(self, producer: AIOKafkaProducer, queued: _Queued) -> asyncio.Future[Any]:
        """Queue the result and its followers; the future of the result's position."""
        out = queued.outgoing
        result: asyncio.Future[Any] = await producer.send(
            out.topic.qualified(self._prefix), **_record(out.result, queued.headers)
        )
        for event in out.followers:
            await producer.send(
                topic_for(event.payload).qualified(self._prefix), **_record(event, queued.headers)
            )
        return result

    async def _open_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            # A transactional id of this producer's own: two instances never fence each
            # other; a dead one's open transaction is aborted by the coordinator's timeout.
            ident = f"{self._prefix}delivery-{uuid.uuid4().hex}"
            producer = AIOKafkaProducer(
                **client_options(self._settings, client_id="delivery-results"),
                transactional_id=ident,
                enable_idempotence=True,
                acks="all",
                transaction_timeout_ms=int(self._settings.result_transaction_timeout_s * 1000),
                max_request_size=max(self._settings.max_message_bytes, 1_048_576),
            )
            await producer.start()  # registers the transactional id with the coordinator
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        """Stop the producer after a failure (its state may be unusable); the next batch
        starts a new one. An open transaction of the old one is aborted by its timeout."""
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), timeout=10)


def _fail(batch: list[_Queued], error: BaseException) -> None:
    for queued in batch:
        if not queued.done.done():
            queued.done.set_exception(error)


def _loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def _record(event: Envelope[Any], trace_headers: Headers) -> dict[str, Any]:
    """The keyword arguments of one record as ``EventPublisher`` writes it."""
    headers = [(k, v.encode()) for k, v in JSON_HEADERS.items()]
    headers += [("event-type", event.type.encode()), *trace_headers]
    return {"value": event.model_dump_json().encode(), "key": event.key, "headers": headers}


def _event_id(value: bytes | None) -> str | None:
    """The event id of an enveloped record's JSON, without validating the rest."""
    try:
        found = json.loads(value or b"").get("event_id")
    except (ValueError, AttributeError):
        return None
    return str(found) if found is not None else None
