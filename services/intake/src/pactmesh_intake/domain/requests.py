"""Requests as intake sees them: what a client submits and what it can read back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol

from pactmesh_contracts.events import (
    Channel,
    Metadata,
    RequestStatus,
    RequestText,
    WorkflowName,
)
from pydantic import BaseModel, ConfigDict, Field


class SubmitRequest(BaseModel):
    """The body of ``POST /v1/requests``."""

    model_config = ConfigDict(extra="forbid")

    text: RequestText
    """The request, in natural language."""
    requested_workflow: WorkflowName | None = None
    """Optional hint; routing validates it against the registered workflows."""
    metadata: Metadata = Field(default_factory=dict)
    """String pairs returned unchanged with the result."""


class Receipt(BaseModel):
    """What ``POST /v1/requests`` answers with 202."""

    request_id: uuid.UUID
    status: RequestStatus
    status_url: str


class HistoryEntry(BaseModel):
    """One status transition."""

    status: RequestStatus
    service: str
    detail: str
    at: datetime


class RequestView(BaseModel):
    """What ``GET /v1/requests/{id}`` answers."""

    request_id: uuid.UUID
    tenant: str
    channel: Channel
    status: RequestStatus
    workflow: str | None
    created_at: datetime
    updated_at: datetime
    history: list[HistoryEntry]


class Transition(BaseModel):
    """A status change to record, idempotently by ``event_id``."""

    event_id: uuid.UUID
    request_id: uuid.UUID
    status: RequestStatus
    service: str
    detail: str = ""
    workflow: str | None = None
    at: datetime


class RequestStore(Protocol):
    """Where intake keeps requests and their status history."""

    async def create(
        self, *, request_id: uuid.UUID, tenant: str, channel: Channel, at: datetime
    ) -> bool:
        """Record a new request as accepted; False if it already existed."""
        ...

    async def status(self, request_id: uuid.UUID) -> RequestStatus | None:
        """The current status, or None for an unknown request."""
        ...

    async def record(self, transition: Transition) -> bool:
        """Apply a transition; False if this event was already recorded."""
        ...

    async def get(self, request_id: uuid.UUID) -> RequestView | None:
        """The request with its history, or None."""
        ...

    async def forget(self, request_id: uuid.UUID) -> None:
        """Remove a request that could not be handed to the mesh."""
        ...


def next_status(current: RequestStatus, proposed: RequestStatus) -> RequestStatus:
    """The status after ``proposed`` arrives: never back out of a terminal status.

    Progress events from different services can interleave; once a request has
    completed (or failed) only ``delivered`` may follow.
    """
    if current is RequestStatus.DELIVERED:
        return current
    if current.is_terminal and proposed is not RequestStatus.DELIVERED:
        return current
    return proposed
