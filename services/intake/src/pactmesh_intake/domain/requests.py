"""Requests as intake sees them: what a client submits and what it can read back."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import (
    Channel,
    Metadata,
    Outcome,
    RequestStatus,
    RequestSubmitted,
    RequestText,
    WorkflowName,
    WorkflowProgress,
    WorkflowResult,
)
from pactmesh_kit.stores.outbox import Outbox
from pydantic import BaseModel, ConfigDict, Field, JsonValue


class SubmitRequest(BaseModel):
    """The body of ``POST /v1/requests``."""

    model_config = ConfigDict(extra="forbid")

    text: RequestText
    """The request, in natural language."""
    requested_workflow: WorkflowName | None = None
    """Optional: a workflow the caller may start (403 otherwise); routing validates it
    against the registered workflows. Without it, routing picks one."""
    metadata: Metadata = Field(default_factory=dict)
    """String pairs returned unchanged with the result."""


class Receipt(BaseModel):
    """What ``POST /v1/requests`` answers with 202."""

    request_id: uuid.UUID
    status: RequestStatus
    status_url: str


def fingerprint(request: SubmitRequest | RequestSubmitted) -> str:
    """SHA-256 of the request's canonical JSON (sorted keys, no whitespace, defaults
    filled in): equal for the same request however its JSON was spelled or whichever
    channel carried it."""
    fields = request.model_dump(mode="json", include={"text", "requested_workflow", "metadata"})
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def encoded_size(request: SubmitRequest | RequestSubmitted) -> int:
    """Bytes of the request as an HTTP body would carry it (UTF-8 JSON)."""
    fields = request.model_dump(mode="json", include={"text", "requested_workflow", "metadata"})
    encoded = json.dumps(fields, separators=(",", ":"), ensure_ascii=False)
    return len(encoded.encode("utf-8", "surrogatepass"))


class HistoryEntry(BaseModel):
    """One status transition."""

    status: RequestStatus
    service: str
    detail: str
    at: datetime


class ResultView(BaseModel):
    """The workflow's result, as delivery published it on the workflow's result topic."""

    workflow: str
    outcome: Outcome
    output: dict[str, JsonValue] = Field(default_factory=dict)
    error: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    at: datetime
    """When delivery published it."""

    @classmethod
    def of(cls, event: Envelope[WorkflowResult]) -> ResultView:
        """What clients read of a result event."""
        result = event.payload
        return cls(
            workflow=result.workflow,
            outcome=result.outcome,
            output=result.output,
            error=result.error,
            metadata=result.metadata,
            at=event.occurred_at,
        )


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
    result: ResultView | None = None
    """Set once the result was delivered."""


@dataclass(frozen=True)
class Submission:
    """Who submitted a request, over which channel, and what (its fingerprint)."""

    tenant: str
    channel: Channel
    status: RequestStatus
    fingerprint: str | None
    """None for requests recorded before fingerprints were kept."""


@dataclass(frozen=True)
class KeyHolder:
    """The request an idempotency key stands for."""

    request_id: uuid.UUID
    fingerprint: str


class Transition(BaseModel):
    """A status change to record, idempotently by ``event_id``."""

    event_id: uuid.UUID
    request_id: uuid.UUID
    status: RequestStatus
    service: str
    detail: str = ""
    workflow: str | None = None
    at: datetime

    @classmethod
    def of(cls, event: Envelope[Any], progress: WorkflowProgress) -> Transition:
        """The transition a progress event reports."""
        return cls(
            event_id=event.event_id,
            request_id=event.workflow_id,
            status=progress.status,
            service=progress.service,
            detail=progress.detail,
            workflow=progress.workflow,
            at=event.occurred_at,
        )


class RequestStore(Protocol):
    """Where intake keeps requests, their status history, results, idempotency keys and
    the outbox of accepted requests not yet known to be published."""

    @property
    def outbox(self) -> Outbox:
        """Accepted-request events written with their request, removed once published."""
        ...

    async def create(
        self,
        *,
        request_id: uuid.UUID,
        tenant: str,
        channel: Channel,
        at: datetime,
        fingerprint: str | None = None,
        event: Envelope[Any] | None = None,
    ) -> bool:
        """Record a new request as accepted, with ``event`` in the outbox, in one
        transaction; False (and nothing written) if it already existed."""
        ...

    async def create_keyed(
        self,
        *,
        request_id: uuid.UUID,
        tenant: str,
        key: str,
        fingerprint: str,
        at: datetime,
        expired_before: datetime,
        event: Envelope[Any] | None = None,
    ) -> KeyHolder:
        """Bind ``tenant``'s ``key`` to a new HTTP request unless a binding made at or
        after ``expired_before`` exists, and record the request (as :meth:`create`) only
        if it won; the binding that holds either way. Atomic: of two concurrent
        submissions with one key, one is recorded and both see it."""
        ...

    async def record_result(self, *, request_id: uuid.UUID, result: ResultView) -> bool:
        """Keep a request's delivered result; False if unknown or already kept."""
        ...

    async def result(self, request_id: uuid.UUID) -> ResultView | None:
        """The request's delivered result, if any."""
        ...

    async def submission(self, request_id: uuid.UUID) -> Submission | None:
        """Who submitted the request and what, or None for an unknown request."""
        ...

    async def status(self, request_id: uuid.UUID) -> RequestStatus | None:
        """The current status, or None for an unknown request."""
        ...

    async def record(self, transition: Transition) -> bool:
        """Apply a transition (status by :func:`next_status`); False if this event was
        already recorded or the request is unknown."""
        ...

    async def get(self, request_id: uuid.UUID) -> RequestView | None:
        """The request with its history and result, or None."""
        ...

    async def prune(self, *, updated_before: datetime, keys_before: datetime) -> dict[str, int]:
        """Delete requests (with their history and result) not updated since
        ``updated_before``, and idempotency keys bound before ``keys_before``; how many
        of each went. Safe on several instances at once."""
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
