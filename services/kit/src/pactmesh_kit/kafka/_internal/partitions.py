"""A batch's partitions: the work each is handling, its commit, its pause while stalled.

A batch is split by partition; each partition's records are one ``PartitionWork``. A
work that finishes is committed with the batch (one commit for every partition that
finished). A work whose message fails with a retryable error *stalls*: its partition is
paused (aiokafka's ``pause()``: no new records are fetched for it and nothing of it is
committed) and the batch goes on without it. The stalled work keeps retrying in the
background; when it finishes, it commits its own partition and resumes it, and the
consumer carries on exactly where the partition stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from pactmesh_kit.kafka._internal.batch import Record

logger = logging.getLogger("pactmesh_kit.kafka")


@dataclass(frozen=True)
class Stall:
    """Why and since when a partition takes no new work."""

    topic: str
    partition: int
    offset: int
    """The offset of the message being retried."""
    event_id: str | None
    """The message's event id, when it could be decoded."""
    since: float
    """``time.monotonic()`` of the first failure."""
    attempts: int
    error: str

    def describe(self) -> dict[str, Any]:
        """For ``/health/ready``: where, for how long, how many attempts, why."""
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "event_id": self.event_id,
            "stalled_s": round(time.monotonic() - self.since, 1),
            "attempts": self.attempts,
            "error": self.error[:500],
        }


class Partitions:
    """The part of the consumer a subscriber drives: pause, resume, commit, assignment.

    FastStream's in-memory test broker hands a stand-in that can neither pause nor
    commit; then ``can_pause`` is false and a batch waits for its stalled partitions in
    place (there is nothing else to consume meanwhile).
    """

    def __init__(self, consumer: Any) -> None:
        pausable = callable(getattr(consumer, "pause", None))
        self._consumer: AIOKafkaConsumer | None = consumer if pausable else None

    @property
    def can_pause(self) -> bool:
        """Whether this is a real consumer, whose partitions can be paused."""
        return self._consumer is not None

    def pause(self, tp: TopicPartition) -> None:
        """Fetch nothing more for ``tp`` until it is resumed."""
        if self._consumer is not None:
            self._call(self._consumer.pause, tp)

    def resume(self, tp: TopicPartition) -> None:
        """Fetch ``tp`` again, from where it was paused."""
        if self._consumer is not None:
            self._call(self._consumer.resume, tp)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commit ``offsets`` of the partitions still assigned to this consumer.

        A partition revoked meanwhile is not committed: its next owner handles its
        messages again (idempotent handlers). A commit the broker refuses or cannot take
        (a rebalance, an outage) is logged and left for the next one, which covers it:
        offsets only grow.
        """
        if self._consumer is None:
            return
        assigned = self._consumer.assignment()
        owned = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not owned:
            return
        try:
            await self._consumer.commit(owned)
        except (KafkaError, IllegalStateError) as exc:
            logger.warning("commit of %s failed (%r); it is redelivered", _names(owned), exc)

    @staticmethod
    def _call(method: Any, tp: TopicPartition) -> None:
        with contextlib.suppress(IllegalStateError):  # revoked: its pause state went too
            method(tp)


def _names(offsets: dict[TopicPartition, int]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]@{offset}" for tp, offset in offsets.items())


class PartitionWork:
    """One partition's records of a batch, being handled."""

    def __init__(self, tp: TopicPartition, records: Sequence[Record], *, next_offset: int) -> None:
        self.tp = tp
        self.records = records
        self.next_offset = next_offset
        """What to commit once every record is handled: past the batch's last offset."""
        self.stall: Stall | None = None
        self.detached = False
        """The batch went on without this work (it stalled): it commits and resumes its
        own partition when it finishes."""
        self.settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done once the work has finished or stalled: what the batch waits for."""
        self.task: asyncio.Task[None] | None = None

    def start(self, run: Callable[[PartitionWork], Coroutine[Any, Any, None]]) -> None:
        """Run ``run(work)`` as the work's task, settled when it ends."""
        self.task = asyncio.create_task(run(self))
        self.task.add_done_callback(self._settle)

    @property
    def running(self) -> bool:
        """Started and not ended."""
        return self.task is not None and not self.task.done()

    @property
    def finished(self) -> bool:
        """Every record handled (not cancelled, not abandoned)."""
        task = self.task
        return (
            task is not None and task.done() and not task.cancelled() and task.exception() is None
        )

    def stalled(self, stall: Stall) -> None:
        """Record the failure being retried; the batch may go on without this work."""
        self.stall = stall
        self._settle()

    def recovered(self) -> Stall | None:
        """Clear the stall, if any, returning it."""
        stall, self.stall = self.stall, None
        return stall

    def _settle(self, task: object = None) -> None:
        if isinstance(task, asyncio.Task) and not task.cancelled():
            task.exception()  # retrieved here: an abandoned work is not an error to report
        if not self.settled.done():
            self.settled.set_result(None)

    async def cancel(self, *, wait_s: float) -> None:
        """Stop the work (its partition was revoked, or the service stops) and wait,
        at most ``wait_s``, until it has stopped: never handled twice at once."""
        task = self.task
        if task is None or task.done():
            return
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=wait_s)
        if not done:
            logger.error(
                "%s[%d]: a handler did not stop within %.0f s of being cancelled",
                self.tp.topic,
                self.tp.partition,
                wait_s,
            )


def split(records: Iterable[Record]) -> dict[TopicPartition, list[Record]]:
    """``records`` by partition, each partition's in offset order."""
    parts: dict[TopicPartition, list[Record]] = {}
    for record in records:
        parts.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    return parts
