"""Turning a finished workflow into the result downstream consumers read."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import WorkflowCompleted, WorkflowResult
from pactmesh_contracts.topics import Topic


@dataclass(frozen=True)
class LedgerEntry:
    """A workflow's result as the ledger knows it: prepared in a Kafka transaction at
    ``partition``/``offset`` of ``topic``, and ``settled`` once that transaction is known
    to have committed."""

    workflow_id: uuid.UUID
    topic: str
    event_id: uuid.UUID
    partition: int | None = None
    offset: int | None = None
    settled: bool = False


class Ledger(Protocol):
    """Which workflows' results were published (so a redelivered completion is not).

    A result is written in two steps around the Kafka transaction that carries it
    (``pactmesh_delivery.adapters.transactions``): ``prepare`` while the transaction is
    open, with the position Kafka gave the result, and ``settle`` once it committed. An
    entry left prepared (the process died between the two) is settled or forgotten by
    reading that position: Kafka decides, not a guess.
    """

    async def entry(self, workflow_id: uuid.UUID) -> LedgerEntry | None:
        """This workflow's result, prepared or settled; ``None`` when never prepared."""
        ...

    async def delivered(self, workflow_id: uuid.UUID) -> bool:
        """Whether this workflow's result is known to be published (settled)."""
        ...

    async def prepare(self, entries: Sequence[LedgerEntry]) -> list[uuid.UUID]:
        """Write every entry, unsettled, or none: the workflow ids that already have an
        entry (another transaction prepared them), empty when all were written."""
        ...

    async def settle(self, workflow_ids: Sequence[uuid.UUID]) -> None:
        """Mark these workflows' prepared results as committed."""
        ...

    async def forget(self, entry: LedgerEntry) -> bool:
        """Delete ``entry`` if it is still prepared at the same position (its transaction
        was aborted); whether it was."""
        ...

    async def prune(self, *, recorded_before: datetime) -> int:
        """Forget results recorded before ``recorded_before``; how many. A completion
        redelivered after that is published again, with the same result event id."""
        ...


@dataclass(frozen=True)
class Outgoing:
    """A workflow's result and the events that announce it, published together."""

    workflow_id: uuid.UUID
    result: Envelope[Any]
    topic: Topic
    followers: Sequence[Envelope[Any]] = ()


class ResultOutlet(Protocol):
    """Where results go: each exactly once on its result topic."""

    async def published(self, workflow_id: uuid.UUID) -> bool:
        """Whether this workflow's result is already out."""
        ...

    async def publish(self, outgoing: Outgoing) -> bool:
        """Publish ``outgoing`` unless its result is already out; whether this call did."""
        ...


_RESULT_NAMESPACE = uuid.UUID("a3c6e0b2-6f0e-4c55-8d0b-3f2f1e7a9c41")


def result_event_id(workflow_id: uuid.UUID) -> uuid.UUID:
    """One event id per workflow's result: a re-published result is recognisably the same."""
    return uuid.uuid5(_RESULT_NAMESPACE, str(workflow_id))


def result_for(event: Envelope[WorkflowCompleted]) -> Envelope[Any]:
    """The result event for a completed workflow."""
    done = event.payload
    result = WorkflowResult(
        workflow=done.workflow,
        outcome=done.outcome,
        output=done.output,
        error=done.error,
        metadata=done.metadata,
    )
    return event.follow(result, event_id=result_event_id(event.workflow_id))
