"""Subscribing to the mesh's result topics, as a downstream system does."""

from __future__ import annotations

import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import WorkflowResult
from pactmesh_contracts.topics import DEFAULT_PREFIX, result_topic
from pactmesh_workflows.registry import registry
from pydantic import TypeAdapter, ValidationError

from pactmesh_client.errors import PactmeshClientError
from pactmesh_client.security import KafkaSecurity

logger = logging.getLogger(__name__)

_RESULT: TypeAdapter[Envelope[WorkflowResult]] = TypeAdapter(Envelope[WorkflowResult])


@dataclass(frozen=True)
class UndecodableResult:
    """A record on a result topic that is not a ``workflow.result.v1`` envelope: skipped
    (and committed), never raised, so one bad record cannot stop a subscriber."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    """The record's exact bytes."""
    error: str
    """Why it was refused (pydantic's validation errors)."""


class ResultSubscriber:
    """Reads typed results from ``<prefix>results.<workflow>`` topics in a consumer group.

    Offsets are committed after the fact: a result counts as handled once the loop asks
    for the next one (or leaves ``async with`` without an exception), and handled
    offsets are committed after each batch. A crash while handling a result redelivers
    it, so handle results idempotently (by ``workflow_id``). Records that do not decode
    are logged, counted in ``skipped``, kept in ``undecodable`` (the latest
    ``keep_undecodable``) and committed past, never raised::

        async with ResultSubscriber("127.0.0.1:9092", group_id="billing") as sub:
            async for result in sub.results(workflows=["refund"], tenant="acme"):
                print(result.workflow_id, result.payload.outcome)

    The tenant filter is a convenience for consumers that read several tenants' results;
    isolation between tenants on a shared cluster is the cluster's ACLs' job.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        group_id: str,
        topic_prefix: str = DEFAULT_PREFIX,
        auto_offset_reset: str = "earliest",
        keep_undecodable: int = 100,
        security: KafkaSecurity | None = None,
        **consumer_options: Any,
    ) -> None:
        """``security`` is how to reach a secured cluster (the standard ``KAFKA_*``
        variables when not given: ``KafkaSecurity.from_env()``); there the ACLs let a
        principal use groups named ``<topic prefix><principal>.``... only
        (``pactmesh.crm.billing``). ``consumer_options`` go to
        ``aiokafka.AIOKafkaConsumer`` as they are."""
        self._bootstrap = bootstrap_servers
        self._group_id = group_id
        self._prefix = topic_prefix
        self._options = {
            **(security or KafkaSecurity.from_env()).options(),
            **consumer_options,
            "auto_offset_reset": auto_offset_reset,
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._handled: dict[TopicPartition, int] = {}
        """Per partition, the offset after the last record handled or skipped."""
        self._in_hand: tuple[TopicPartition, int] | None = None
        """The result yielded and not yet handed back (the loop is working on it)."""
        self.skipped = 0
        """Records skipped because they did not decode."""
        self.undecodable: deque[UndecodableResult] = deque(maxlen=keep_undecodable)
        """The latest records skipped because they did not decode."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Leaving cleanly (``break`` after handling a result) hands that result back;
        # leaving on an exception does not, so it is read again next time.
        if exc_type is None and self._in_hand is not None:
            partition, offset = self._in_hand
            self._handled[partition] = offset
        await self.close()

    async def close(self) -> None:
        """Commit what was handled and leave the consumer group (``async with`` does)."""
        consumer, self._consumer = self._consumer, None
        self._in_hand = None
        if consumer is not None:
            try:
                await self._commit(consumer)
            finally:
                await consumer.stop()

    async def results(
        self,
        *,
        workflows: Iterable[str] | None = None,
        tenant: str | None = None,
        workflow_ids: Iterable[uuid.UUID] | None = None,
    ) -> AsyncIterator[Envelope[WorkflowResult]]:
        """Results of ``workflows`` (every registered one by default) as they arrive, for
        ``tenant`` (every tenant when None) and, when given, only those of
        ``workflow_ids``. Runs until the caller stops iterating or the subscriber is
        closed."""
        if self._consumer is not None:
            raise PactmeshClientError("this subscriber is already reading results")
        wanted = frozenset(workflow_ids) if workflow_ids is not None else None
        consumer = AIOKafkaConsumer(
            *(result_topic(w).qualified(self._prefix) for w in (workflows or registry())),
            bootstrap_servers=self._bootstrap,
            group_id=self._group_id,
            enable_auto_commit=False,
            # Results are published in Kafka transactions: an aborted one is not a result.
            isolation_level="read_committed",
            **self._options,
        )
        await consumer.start()
        self._consumer = consumer
        try:
            while self._consumer is consumer:
                batches = await consumer.getmany(timeout_ms=500)
                for partition, records in batches.items():
                    for record in records:
                        result = self._decode(record)
                        if result is not None and _wanted(result, tenant, wanted):
                            self._in_hand = (partition, record.offset + 1)
                            yield result
                            self._in_hand = None
                        self._handled[partition] = record.offset + 1
                await self._commit(consumer)
        finally:
            if self._consumer is consumer:
                await self.close()

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        handled, self._handled = self._handled, {}
        if not handled:
            return
        try:
            await consumer.commit(handled)
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partitions: their new owner reads them again.
            logger.warning("could not commit %s (%r): they will be read again", handled, exc)

    def _decode(self, record: ConsumerRecord[Any, Any]) -> Envelope[WorkflowResult] | None:
        try:
            return _RESULT.validate_json(record.value or b"")
        except ValidationError as exc:
            self.skipped += 1
            self.undecodable.append(
                UndecodableResult(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value,
                    error=str(exc),
                )
            )
            logger.warning(
                "skipping %s[%d]@%d, not a workflow.result.v1 envelope: %s",
                record.topic,
                record.partition,
                record.offset,
                exc.errors(include_url=False)[:3],
            )
            return None


def _wanted(
    result: Envelope[WorkflowResult], tenant: str | None, ids: frozenset[uuid.UUID] | None
) -> bool:
    return (tenant is None or result.tenant == tenant) and (
        ids is None or result.workflow_id in ids
    )
