"""Handling a batch: each key's records in order, different keys' concurrently, and a
rebalance that waits for the batch in hand and abandons what still runs on the
partitions it takes away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition

logger = logging.getLogger("pactmesh_kit.kafka")

REBALANCE_WAIT_S = 8.0
"""How long a rebalance waits for the batch in hand (under aiokafka's default 10 s
rebalance timeout, after which the group would go on without this consumer)."""

Record: TypeAlias = ConsumerRecord[Any, Any]
"""A message as consumed."""


@dataclass(frozen=True)
class Batch:
    """What FastStream hands a subscriber: the records, and the consumer they came from
    (an ``AIOKafkaConsumer``, or the in-memory test broker's stand-in)."""

    records: Sequence[Record]
    consumer: Any


Abandon = Callable[[set[TopicPartition]], Awaitable[None]]
"""Stops, and waits for, whatever still handles records of the partitions given."""


class BatchGate(ConsumerRebalanceListener):  # type: ignore[misc]
    """Holds a rebalance until the batch being handled is done, then abandons what
    still runs on the revoked partitions (a message being retried through an outage).

    Partitions are revoked before any consumer of the group is given new ones; waiting
    here means a partition's uncommitted messages go to their next owner only once this
    consumer has stopped handling them (it commits none of them, so the next owner
    handles them again: idempotent, never concurrent). The wait is bounded, so that a
    partition stalled by an outage never holds the group's rebalance.
    """

    def __init__(self, name: str, abandon: Abandon | None = None) -> None:
        self._name = name
        self._idle = asyncio.Event()
        self._idle.set()
        self._abandon = abandon

    @asynccontextmanager
    async def handling(self) -> AsyncIterator[None]:
        """Mark a batch as in hand for the duration of the block."""
        self._idle.clear()
        try:
            yield
        finally:
            self._idle.set()

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Wait (bounded) for the batch in hand, then stop what still runs on ``revoked``."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=REBALANCE_WAIT_S)
        except TimeoutError:
            logger.warning("%s: rebalancing with a batch still in hand", self._name)
        if self._abandon is not None and revoked:
            await self._abandon(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Nothing to do: handling resumes from the committed offsets."""


async def by_key(records: Sequence[Record], deliver: Callable[[Record], Awaitable[None]]) -> None:
    """Deliver ``records``: one key's in order, different keys' concurrently.

    A task group, so that if one key's delivery stops (abandoned at shutdown) the others
    are cancelled with it: nothing after a message that was not handled is handled, and
    nothing of the partition is committed.
    """
    lanes: dict[Any, list[Record]] = {}
    for record in records:
        key = record.key if record.key is not None else (record.topic, record.partition)
        lanes.setdefault(key, []).append(record)
    if len(lanes) == 1:
        for record in records:
            await deliver(record)
        return

    async def lane(queue: list[Record]) -> None:
        for record in queue:
            await deliver(record)

    async with asyncio.TaskGroup() as group:
        for queue in lanes.values():
            group.create_task(lane(queue))
