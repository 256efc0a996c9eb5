"""The request timeline and token accounting: what intake keeps of the audit topic.

Every step of a request reaches the ``audit`` topic as a typed event; intake keeps them
(``AuditStore``), serves a request's events in order (``GET /v1/requests/{id}/timeline``)
and counts each model call's tokens and cost per tenant, day, workflow and model, which
``GET /v1/usage`` reports and the daily budget is checked against.

Who may read a timeline (``may_read``): a principal of the request's tenant that is the
request's requester (and holds ``requests:read``), an auditor (``audit:read``), or a
reviewer whose role a gate of this request asked for (``reviews:read``), so a reviewer
sees what the agent did before deciding. Anyone else gets the 404 of a missing request.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope, Principal
from pactmesh_contracts.events import AuditGateFired, AuditRequestAccepted
from pactmesh_contracts.usage import Budget, Usage
from pactmesh_kit.auth.policy import AccessPolicy
from pydantic import AwareDatetime, BaseModel, ConfigDict, JsonValue

READ_AUDIT = "audit:read"
READ_REQUESTS = "requests:read"
READ_REVIEWS = "reviews:read"
READ_USAGE = "usage:read"


class UsageRow(BaseModel):
    """One tenant's model spend on one day, for one workflow and model."""

    model_config = ConfigDict(frozen=True)

    day: date
    workflow: str | None
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost: float


class AuditStore(Protocol):
    """Where intake keeps the audit topic's events (SQLite or Postgres)."""

    async def record(self, event: Envelope[Any]) -> bool:
        """Keep ``event`` (once per event id) and, for a model call, count its usage in
        the same transaction; False when it was already kept."""
        ...

    async def events(self, request_id: uuid.UUID) -> list[Envelope[Any]]:
        """The request's events in the order they happened."""
        ...

    async def spent(self, tenant: str, day: date) -> Usage:
        """What ``tenant``'s model calls spent on ``day`` (UTC)."""
        ...

    async def usage(self, tenant: str, since: date) -> list[UsageRow]:
        """``tenant``'s spend per day, workflow and model, from ``since`` on."""
        ...

    async def prune(self, before: datetime) -> int:
        """Forget events that happened before ``before``; how many went."""
        ...


class TimelineEntry(BaseModel):
    """One step of a request."""

    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID
    at: AwareDatetime
    type: str
    """The audit event's type (``audit.model.called.v1``, ...)."""
    principal: str
    """Who the step acted for."""
    detail: dict[str, JsonValue]
    """The event's payload."""


class Timeline(BaseModel):
    """A request's steps, in order."""

    request_id: uuid.UUID
    tenant: str
    entries: list[TimelineEntry]


class UsageReport(BaseModel):
    """A tenant's spend (``GET /v1/usage``)."""

    tenant: str
    since: date
    today: Usage
    """Spent so far today (UTC), what the daily budget is checked against."""
    budget: Budget
    rows: list[UsageRow]


def timeline_of(request_id: uuid.UUID, events: list[Envelope[Any]]) -> Timeline:
    """The timeline view of a request's stored events."""
    return Timeline(
        request_id=request_id,
        tenant=events[0].tenant,
        entries=[
            TimelineEntry(
                event_id=e.event_id,
                at=e.occurred_at,
                type=e.type,
                principal=e.principal.subject,
                detail=e.payload.model_dump(mode="json", exclude={"type"}),
            )
            for e in events
        ],
    )


def may_read(
    *, policy: AccessPolicy, principal: Principal, tenant: str, events: list[Envelope[Any]]
) -> bool:
    """Whether ``principal`` (of ``tenant``) may read the timeline made of ``events``."""
    if not events or events[0].tenant != tenant:
        return False
    grants = policy.grants(principal).capabilities
    if READ_AUDIT in grants:
        return True
    requester = next(
        (e.principal for e in events if isinstance(e.payload, AuditRequestAccepted)), None
    )
    if READ_REQUESTS in grants and requester is not None and requester.subject == principal.subject:
        return True
    asked = {e.payload.required_role for e in events if isinstance(e.payload, AuditGateFired)}
    return READ_REVIEWS in grants and bool(asked & set(principal.roles))


def next_utc_midnight(now: datetime) -> datetime:
    """When a daily budget starts afresh."""
    today = now.astimezone(UTC).date()
    return datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
