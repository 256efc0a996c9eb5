"""Turning a finished workflow into the result downstream consumers read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import WorkflowCompleted, WorkflowResult


class Ledger(Protocol):
    """Which workflows' results were published (so a redelivered completion is not)."""

    async def delivered(self, workflow_id: uuid.UUID) -> bool:
        """Whether this workflow's result was already published."""
        ...

    async def record(self, workflow_id: uuid.UUID, *, topic: str, event_id: uuid.UUID) -> None:
        """Remember that the result went out on ``topic`` as ``event_id``."""
        ...

    async def prune(self, *, recorded_before: datetime) -> int:
        """Forget results recorded before ``recorded_before``; how many. A completion
        redelivered after that is published again, with the same result event id."""
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
