"""Handling a batch: each key's records in order, different keys' concurrently, and a
rebalance that waits for the batch in hand."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition

logger = logging.getLogger("pactmesh_kit.kafka")

REBALANCE_WAIT_S = 8.0
"""How long a rebalance waits for the batch in hand (under aiokafka's default 10 s
rebalance timeout, after which the group would go on without this consumer)."""


class BatchGate(ConsumerRebalanceListener):  # type: ignore[misc]
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


Record: TypeAlias = ConsumerRecord[Any, Any]
"""A message as consumed."""


async def by_key(records: Sequence[Record], deliver: Callable[[Record], Awaitable[None]]) -> None:
    """Deliver ``records``: one key's in order, different keys' concurrently.

    A task group, so that if one key's delivery fails (the dead-letter topic is
    unreachable) the others are cancelled before the batch is rewound: no message is
    ever handled twice at the same time.
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
