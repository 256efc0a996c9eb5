"""Webhooks: what a downstream system registers, what is queued for it, and when a
failed delivery is tried again.

Pure logic and contracts only; the stores (SQLite, Postgres) live in ``adapters/`` and
the HTTP sender in ``adapters/dispatcher.py``.
"""

from __future__ import annotations

import enum
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Protocol

from pactmesh_contracts.events import WorkflowName
from pactmesh_workflows.registry import registry
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, StringConstraints, field_validator
from tenacity import RetryCallState, Retrying, wait_random_exponential

from pactmesh_delivery.domain.egress import url_refusal

# -- the API's contracts ----------------------------------------------------------------


class WebhookCreate(BaseModel):
    """The body of ``POST /v1/webhooks``."""

    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    """Where results are POSTed: an absolute ``http`` or ``https`` URL without
    credentials, whose host is (or resolves to) public addresses only."""
    workflows: list[WorkflowName] = Field(default_factory=list, max_length=len(registry()))
    """The workflows whose results this webhook receives; empty means all of them."""
    description: Annotated[str, StringConstraints(max_length=500)] = ""

    @field_validator("url")
    @classmethod
    def _fit_for_webhooks(cls, url: HttpUrl) -> HttpUrl:
        reason = url_refusal(str(url))
        if reason is not None:
            raise ValueError(reason)
        return url

    @field_validator("workflows")
    @classmethod
    def _known_workflows(cls, workflows: list[str]) -> list[str]:
        unknown = sorted(set(workflows) - set(registry()))
        if unknown:
            raise ValueError(f"unknown workflows {unknown}; known: {list(registry())}")
        return sorted(set(workflows))


class Webhook(BaseModel):
    """A registered webhook, as listed (never with its secret)."""

    id: uuid.UUID
    url: str
    """Redacted: no user information, query values shown as ``redacted``."""
    workflows: list[str]
    """Empty: every workflow's results."""
    description: str
    created_at: datetime


class WebhookCreated(Webhook):
    """What ``POST /v1/webhooks`` answers: the only time the signing secret is shown."""

    secret: str
    """HMAC key of the ``Pactmesh-Signature`` header; store it, it is never shown again."""


class DeliveryState(enum.StrEnum):
    """Where one (webhook, result) delivery stands."""

    PENDING = "pending"
    """Queued or waiting for its next attempt."""
    DELIVERED = "delivered"
    """The receiver answered 2xx; never sent again."""
    DEAD = "dead"
    """Every attempt failed; a dead-letter record went to the dead-letter topic."""


class DeliveryView(BaseModel):
    """One entry of ``GET /v1/webhooks/{id}/deliveries``."""

    id: uuid.UUID
    """Also the ``Pactmesh-Delivery`` header: the same on every attempt."""
    result_event_id: uuid.UUID
    workflow_id: uuid.UUID
    workflow: str
    state: DeliveryState
    attempts: int
    last_status: int | None
    """HTTP status of the last attempt; ``None`` if it got no answer."""
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    """When a pending delivery is tried next; ``None`` once delivered or dead."""
    delivered_at: datetime | None


def new_secret() -> str:
    """A fresh signing secret: 32 random bytes, URL-safe."""
    return secrets.token_urlsafe(32)


def matches(workflows: list[str], workflow: str) -> bool:
    """Whether a webhook subscribed to ``workflows`` receives ``workflow``'s results."""
    return not workflows or workflow in workflows


# -- the outbox -------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultRecord:
    """A result as read from its result topic: what every matching webhook receives."""

    result_event_id: uuid.UUID
    workflow_id: uuid.UUID
    workflow: str
    tenant: str
    body: bytes
    """The record's value, exactly as on the topic: the POST body, and the dead-letter
    record's original bytes."""
    key: bytes | None
    headers: dict[str, str]
    """The record's Kafka headers, kept for the dead-letter record."""
    source_topic: str
    source_partition: int
    source_offset: int
    trace_context: dict[str, str]
    """W3C trace context of the consumer span, so each attempt joins the request's trace."""


@dataclass(frozen=True)
class DueDelivery:
    """A pending delivery claimed for one attempt (or for dead-lettering)."""

    id: uuid.UUID
    webhook_id: uuid.UUID
    url: str
    """The full URL, credentials and query included: never logged or shown as it is."""
    secret: str | None
    """The signing secret; ``None`` when none of the configured keys decrypts it."""
    result: ResultRecord
    attempts: int
    """Attempts made so far, counting the one just claimed."""
    attempt_counted: bool
    """False when no attempt is left and the claim is for dead-lettering only."""
    last_status: int | None
    last_error: str | None


class Outbox(Protocol):
    """The durable queue of deliveries the dispatcher works through."""

    async def claim_due(
        self,
        *,
        now: float,
        lease_until: float,
        limit: int,
        max_attempts: int,
        per_tenant: int | None = None,
        busy: Mapping[str, int] | None = None,
    ) -> list[DueDelivery]:
        """Pending deliveries due at ``now``, each hidden until ``lease_until``, the
        earliest first, but never more than ``per_tenant`` of one tenant counting the
        ``busy`` ones (its attempts already in flight).

        A claim counts an attempt, unless ``max_attempts`` were already made: then only
        the dead-lettering is due (it failed, or the process stopped, before it was
        recorded) and :attr:`DueDelivery.attempt_counted` is False.
        """
        ...

    async def next_due_at(self) -> float | None:
        """When the earliest pending delivery is due (Unix seconds)."""
        ...

    async def mark_delivered(self, delivery_id: uuid.UUID, *, status: int, now: float) -> None:
        """Record a 2xx answer: the delivery is done."""
        ...

    async def mark_failed(
        self,
        delivery_id: uuid.UUID,
        *,
        status: int | None,
        error: str,
        next_attempt_at: float,
        now: float,
    ) -> None:
        """Record a failed attempt and when to try again."""
        ...

    async def mark_dead(self, delivery_id: uuid.UUID, *, now: float) -> None:
        """Record that the delivery was dead-lettered."""
        ...


class WebhookStore(Protocol):
    """Registered webhooks and their deliveries, always within one tenant."""

    async def create_webhook(
        self,
        *,
        tenant: str,
        spec: WebhookCreate,
        secret: str,
        now: float,
        max_per_tenant: int | None = None,
    ) -> Webhook:
        """Register a webhook for ``tenant`` (its secret stored encrypted);
        ``WebhookLimitReached`` when it has ``max_per_tenant`` already."""
        ...

    async def webhooks(self, *, tenant: str) -> list[Webhook]:
        """``tenant``'s webhooks, oldest first."""
        ...

    async def webhook(self, *, tenant: str, webhook_id: uuid.UUID) -> Webhook | None:
        """One of ``tenant``'s webhooks; ``None`` for an unknown id or another tenant's."""
        ...

    async def delete_webhook(self, *, tenant: str, webhook_id: uuid.UUID) -> bool:
        """Remove the webhook and its deliveries (pending ones are never sent);
        False if ``tenant`` has no such webhook."""
        ...

    async def deliveries(
        self, *, tenant: str, webhook_id: uuid.UUID, limit: int
    ) -> list[DeliveryView] | None:
        """The webhook's deliveries, newest first; ``None`` if there is no such webhook."""
        ...

    async def enqueue(self, result: ResultRecord, *, now: float) -> int:
        """Queue ``result`` once for every webhook of its tenant and workflow; how many
        deliveries were new (a result seen before queues nothing)."""
        ...

    async def prune(self, *, finished_before: float) -> int:
        """Delete deliveries delivered or dead before ``finished_before`` (Unix seconds);
        how many. Safe on several instances at once."""
        ...


class WebhookOutbox(WebhookStore, Outbox, Protocol):
    """The webhook store, which also holds the dispatcher's outbox."""


# -- retries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often, and how far apart, one delivery is attempted."""

    max_attempts: int = 8
    base_s: float = 1.0
    """Window of the first retry's pause; each later window doubles."""
    cap_s: float = 300.0
    """No window is wider than this."""
    attempt_timeout_s: float = 10.0

    def delay_after(self, attempt: int) -> float:
        """The pause after failed attempt number ``attempt`` (1-based): "full jitter",
        uniform in ``[0, min(cap, base * 2 ** (attempt - 1))]``.

        tenacity's ``wait_random_exponential`` computes it; the dispatcher persists the
        resulting time rather than sleeping, so a retry survives a restart.
        """
        state = RetryCallState(_RETRYING, fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return float(wait_random_exponential(multiplier=self.base_s, max=self.cap_s)(state))

    def exhausted(self, attempts: int) -> bool:
        """Whether no attempt is left after ``attempts``."""
        return attempts >= self.max_attempts

    @property
    def lease_s(self) -> float:
        """How long a claimed delivery is hidden from other passes: past its attempt's
        timeout, so only a crash mid-attempt lets the lease expire."""
        return self.attempt_timeout_s + 5.0


_RETRYING = Retrying()
"""Only carried by the RetryCallState that the wait strategy reads."""


def describe_failure(status: int | None, error: str | None) -> str:
    """A failed attempt in a few words: ``HTTP 500 (17 bytes)`` or the transport
    error. A receiver's answer is never quoted: a webhook could otherwise read what an
    address it cannot reach itself answers."""
    if status is not None:
        return f"HTTP {status}" + (f" ({error})" if error else "")
    return error or "no answer"
