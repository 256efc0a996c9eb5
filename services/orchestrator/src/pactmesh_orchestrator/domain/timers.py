"""Durable timers: what wakes a run when no event will.

Every run has at most one wake-up row beside its checkpoints (``wakeups``), written by
the engine as each run segment starts and ends:

* ``stall``: written as a segment starts, due ``stall_after_s`` later. A segment that
  finishes replaces it, so a due stall means the process running it died between two
  steps (or after the checkpoint, before its events went out): the sweeper runs it on
  from its checkpoint and publishes what it implies, without waiting for a new event.
* ``deadline``: a run waiting for tool calls, due at the longest call's ``timeout_s`` plus
  ``deadline_margin_s``. When due, the sweeper publishes a ``ToolCallFailed`` with the
  ``timeout`` error code for each call still waited for, on the tool results topic like
  any answer, so the graph takes the recovery path it declares for a failed call (the
  retry step reuses the idempotency key). The timeout goes through Kafka rather than
  resuming the run here so that it is ordered with a genuine answer on the run's
  partition: whichever comes first is the answer, the other is a repeated answer to a
  call the run once asked, which changes nothing.
* ``expire``: a finished run, due ``finished_ttl_s`` later; the sweeper deletes its
  checkpoints (LangGraph's thread deletion), outbox marks and row.

A run waiting at a review has no row: hitl owns a review's expiry. The sweeper claims
due rows by moving them ``lease_s`` into the future (on Postgres with ``FOR UPDATE SKIP
LOCKED``, so several instances never claim the same row; SQLite is one instance per data
dir): a claim whose instance dies is due again when its lease ends.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pactmesh_orchestrator.domain.engine import Engine

logger = logging.getLogger(__name__)


class Wake(StrEnum):
    """Why a run's row wakes it."""

    STALL = "stall"
    DEADLINE = "deadline"
    EXPIRE = "expire"


@dataclass(frozen=True)
class TimerSettings:
    """How long the engine waits before the sweeper steps in."""

    deadline_margin_s: float = 30.0
    """Added to a tool call's own ``timeout_s`` (the tools service answers a timeout
    itself by then) before the run takes its recovery path without an answer."""
    stall_after_s: float = 300.0
    """A segment not finished this long after it started is taken for stopped."""
    finished_ttl_s: float = 7 * 86_400.0
    """How long a finished run's checkpoints are kept."""


@dataclass(frozen=True)
class Due:
    """A claimed wake-up."""

    thread_id: str
    wake: Wake
    pause: str = ""
    """For a deadline: the pause it was set for (the engine's outbox marker of it)."""


class Wakeups(Protocol):
    """The wake-up rows, one per run at most."""

    async def set(self, thread_id: str, due_at: float, wake: Wake, pause: str = "") -> None:
        """Create or replace the run's row (``due_at`` in seconds since the epoch)."""
        ...

    async def clear(self, thread_id: str) -> None:
        """Remove the run's row, if any."""
        ...

    async def claim(self, now: float, lease_until: float, limit: int) -> list[Due]:
        """Up to ``limit`` rows due at ``now``, each moved to ``lease_until``."""
        ...

    async def purge(self, thread_id: str) -> bool:
        """Delete a deleted run's outbox marks and its ``expire`` row; False if its row
        says something else (then nothing is deleted)."""
        ...


class MemoryWakeups:
    """Wake-up rows in a dict: for an engine whose state lives in this process only."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[float, Due]] = {}

    async def set(self, thread_id: str, due_at: float, wake: Wake, pause: str = "") -> None:
        self.rows[thread_id] = (due_at, Due(thread_id, wake, pause))

    async def clear(self, thread_id: str) -> None:
        self.rows.pop(thread_id, None)

    async def claim(self, now: float, lease_until: float, limit: int) -> list[Due]:
        due = sorted((at, t) for t, (at, _) in self.rows.items() if at <= now)[:limit]
        claimed = [self.rows[t][1] for _, t in due]
        for row in claimed:
            self.rows[row.thread_id] = (lease_until, row)
        return claimed

    async def purge(self, thread_id: str) -> bool:
        row = self.rows.get(thread_id)
        if row is None or row[1].wake is not Wake.EXPIRE:
            return False
        del self.rows[thread_id]
        return True


class Sweeper:
    """Wakes the runs whose rows are due; one round per call of ``sweep``."""

    def __init__(
        self,
        engine: Engine,
        wakeups: Wakeups,
        *,
        lease_s: float,
        batch: int = 200,
        retry_s: float = 30.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Claims last ``lease_s``; a wake-up that fails is due again ``retry_s`` later."""
        self._engine = engine
        self._retry_s = retry_s
        self._wakeups = wakeups
        self._lease_s = lease_s
        self._batch = batch
        self._clock = clock

    async def sweep(self) -> Mapping[str, int]:
        """Claim the due rows and wake their runs; how many ended each way."""
        now = self._clock().timestamp()
        due = await self._wakeups.claim(now, now + self._lease_s, self._batch)
        done = Counter[str]()
        for row in due:
            try:
                done[await self._engine.wake(uuid.UUID(row.thread_id), row.wake, row.pause)] += 1
            except Exception:
                logger.exception(
                    "waking run %s (%s) failed; trying again later", row.thread_id, row.wake
                )
                done["failed"] += 1
                await self._again(row, now)
        return done

    async def _again(self, row: Due, now: float) -> None:
        """Make a failed wake-up due again ``retry_s`` later, sooner than its lease (a
        broker or database outage is often short, and a deadline is worth keeping); if
        even that fails, the lease brings it back. Overwriting a row
        a handler set meanwhile is harmless: a wake-up acts on the run's checkpoint, not
        on its row (at worst it publishes what the outbox says was published already)."""
        try:
            await self._wakeups.set(row.thread_id, now + self._retry_s, row.wake, row.pause)
        except Exception:
            logger.warning("run %s stays claimed until its lease ends", row.thread_id)
