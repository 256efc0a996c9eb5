"""The inbox of tool calls: what the Kafka handler records and the dispatcher runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class PendingCall:
    """A recorded call not yet answered."""

    seq: int
    """Order of arrival; never reused: pending calls are taken oldest first."""
    call_id: uuid.UUID
    envelope: str
    """The ``ToolCallRequested`` envelope as JSON, exactly as recorded."""
    traceparent: str | None
    """W3C trace context of the span that received the request, to answer in its trace."""


@dataclass(frozen=True)
class DispatchLimits:
    """How much the dispatcher holds at once and how long it keeps done calls."""

    max_in_flight: int
    """Calls running at once; further pending calls wait in the inbox."""
    batch_size: int
    """Pending calls read from the inbox per query."""
    retention_s: float
    """How long a done call is kept, so that a redelivered request is ignored."""
    prune_interval_s: float
    lease_s: float = 30.0
    """How long a claimed call is left to the instance that claimed it; that instance
    renews the lease every third of it while the call runs."""


class Inbox(Protocol):
    """Durable record of the tool calls received, each answered once, shared by every
    instance that uses the same store: a call is run by the instance that claimed it,
    for as long as it renews its lease."""

    async def record(self, *, call_id: uuid.UUID, envelope: str, traceparent: str | None) -> bool:
        """Store a call as pending, durably before returning; ``False`` (and no change)
        when ``call_id`` is already there."""
        ...

    async def claim(self, *, limit: int, lease_s: float) -> list[PendingCall]:
        """Up to ``limit`` pending calls that nobody holds a lease on, oldest first,
        each leased to the caller for ``lease_s`` (no other claim returns it meanwhile)."""
        ...

    async def renew(self, call_ids: Iterable[uuid.UUID], *, lease_s: float) -> None:
        """Lease these pending calls for ``lease_s`` from now (0: give them back)."""
        ...

    async def finish(self, call_ids: Iterable[uuid.UUID]) -> None:
        """Mark calls answered (their results are published), in one transaction."""
        ...

    async def prune(self, *, older_than_s: float) -> int:
        """Delete answered calls finished more than ``older_than_s`` ago; how many."""
        ...
