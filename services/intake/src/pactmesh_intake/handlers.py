"""Intake's Kafka subscribers.

Requests from the inbound topic, progress (status transitions) and results, in the
service's consumer groups; and, in groups of this instance's own, from the latest
offsets, progress, tokens and results for the SSE clients connected here (decoded only
for requests a client here follows).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import NoReturn

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import RequestSubmitted, WorkflowProgress, WorkflowResult
from pactmesh_contracts.topics import (
    AUDIT,
    REQUESTS_INBOUND,
    WORKFLOW_PROGRESS,
    AuditEvent,
    WorkflowUpdate,
)
from pactmesh_kit.auth.tokens import AuthError, Identity
from pactmesh_kit.errors import PactmeshError, RefusedMessage
from pactmesh_kit.kafka import Kafka, Record
from pactmesh_workflows.registry import registry

from pactmesh_intake.domain.errors import IntakeError
from pactmesh_intake.domain.intake import accept_inbound, refusal_audit
from pactmesh_intake.domain.requests import ResultView, Transition
from pactmesh_intake.runtime import Runtime

logger = logging.getLogger(__name__)


def register(kafka: Kafka, runtime: Runtime) -> None:
    """Subscribe intake's handlers."""

    @kafka.subscriber(REQUESTS_INBOUND)
    async def on_inbound(event: Envelope[RequestSubmitted], record: Record) -> None:
        """Accept a request published by an upstream system, which the record's bearer
        token identifies; audit and dead-letter what HTTP would refuse with a 4xx (no
        valid token, an envelope claiming another tenant or principal, not permitted,
        too large, a workflow id reused for another request); dead-letter one of a tenant
        whose daily budget is spent."""
        await _inbound(runtime, event, record)

    _register_records(kafka, runtime)
    _register_live(kafka, runtime)


async def _inbound(runtime: Runtime, event: Envelope[RequestSubmitted], record: Record) -> None:
    identity: Identity | None = None
    try:
        identity = await runtime.tokens.identify(record.headers)
        if (spent := await runtime.over_daily_budget(identity.tenant)) is not None:
            raise RefusedMessage(
                f"over_budget (HTTP 429 equivalent): tenant {identity.tenant}: {spent}"
            )
        accepted = await accept_inbound(
            store=runtime.require_store(),
            publisher=runtime.publisher,
            auditor=runtime.auditor,
            policy=runtime.policy,
            event=event,
            identity=identity,
            max_bytes=runtime.settings.max_body_bytes,
            now=datetime.now(UTC),
        )
    except (IntakeError, AuthError) as exc:
        await _refuse(runtime, event, exc, identity)
    if accepted:
        logger.info("accepted %s from the inbound topic", event.workflow_id)


def _register_records(kafka: Kafka, runtime: Runtime) -> None:
    """What intake keeps of every request: status transitions, results, the timeline."""

    @kafka.subscriber(WORKFLOW_PROGRESS)
    async def on_progress(event: Envelope[WorkflowUpdate], record: Record) -> None:
        """Record a status transition for ``GET /v1/requests/{id}`` (tokens are not kept)."""
        if isinstance(event.payload, WorkflowProgress):
            await runtime.require_store().record(Transition.of(event, event.payload))

    @kafka.subscriber(
        *registry().result_topics(),
        name="results",
        description="Delivered results, kept for status reads and replayed event streams.",
    )
    async def on_result(event: Envelope[WorkflowResult], record: Record) -> None:
        """Keep the result of a request submitted here (others' are not ours to keep)."""
        await runtime.require_store().record_result(
            request_id=event.workflow_id, result=ResultView.of(event)
        )

    @kafka.subscriber(
        AUDIT,
        description="Every step of every request, kept for timelines and usage.",
    )
    async def on_audit(event: Envelope[AuditEvent], record: Record) -> None:
        """Keep a step of a request's timeline (and count a model call's usage)."""
        await runtime.require_audit().record(event)


async def _refuse(
    runtime: Runtime, event: Envelope[RequestSubmitted], error: PactmeshError, by: Identity | None
) -> NoReturn:
    """Audit a refusal about who sent the request, then dead-letter the record."""
    if (audit := refusal_audit(event, error, by)) is not None:
        await runtime.auditor.publish(audit)
    raise RefusedMessage(f"{error.code} (HTTP {error.http_status} equivalent): {error}") from error


def _register_live(kafka: Kafka, runtime: Runtime) -> None:
    """Each instance needs every event for the SSE clients connected to it: groups of
    its own, from the latest offset (history comes from the store, not the topic). What
    the contract refuses is skipped: the service's own groups dead-letter it, once."""

    def followed(record: Record) -> bool:
        request_id = _request_id(record)
        return request_id is not None and runtime.live.following(request_id) > 0

    async def on_live(event: Envelope[WorkflowUpdate | WorkflowResult], record: Record) -> None:
        """Hand the event to the SSE clients following its request here."""
        runtime.live.publish(event)

    for topics, name in (
        ((WORKFLOW_PROGRESS,), "progress"),
        (registry().result_topics(), "results"),
    ):
        kafka.subscriber(
            *topics,
            name=f"{name}.live",
            per_instance=True,
            from_latest=True,
            select=followed,
            wanted=runtime.live.wanted,
            lenient=True,
            description=f"{name}, for this instance's SSE clients.",
        )(on_live)


def _request_id(record: Record) -> uuid.UUID | None:
    """The request a record belongs to, from its key (the workflow id)."""
    try:
        return uuid.UUID(record.key.decode()) if record.key else None
    except ValueError:
        return None
