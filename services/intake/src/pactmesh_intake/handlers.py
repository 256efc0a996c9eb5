"""Intake's Kafka subscribers.

Keyed subscribers (batches, one commit per batch, requests handled concurrently and
each request's events in order). The live fan-out reads every progress and token event
but decodes only those of requests an SSE client here follows.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.middlewares import AckPolicy
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import RequestSubmitted, WorkflowProgress
from pactmesh_contracts.topics import REQUESTS_INBOUND, WORKFLOW_PROGRESS, WorkflowUpdate
from pactmesh_kit.broker import (
    BATCH_IDLE_MS,
    BATCH_MAX_RECORDS,
    Record,
    consumer_group,
    keyed_subscriber,
    raw_records,
    undecoded_batch,
)
from pydantic import ValidationError

from pactmesh_intake.domain.intake import accept_inbound
from pactmesh_intake.domain.requests import Transition
from pactmesh_intake.runtime import Runtime

logger = logging.getLogger(__name__)


def register(broker: KafkaBroker, runtime: Runtime) -> None:
    """Subscribe intake's handlers on ``broker``."""
    settings = runtime.settings

    @keyed_subscriber(broker, REQUESTS_INBOUND, settings)
    async def on_inbound(event: Envelope[RequestSubmitted], record: Record) -> None:
        """Accept a request published by an upstream system."""
        if await accept_inbound(
            store=runtime.require_store(), publisher=runtime.publisher, event=event
        ):
            logger.info("accepted %s from the inbound topic", event.workflow_id)

    @keyed_subscriber(broker, WORKFLOW_PROGRESS, settings)
    async def on_progress(event: Envelope[WorkflowUpdate], record: Record) -> None:
        """Record a status transition for ``GET /v1/requests/{id}`` (tokens are not kept)."""
        if not isinstance(event.payload, WorkflowProgress):
            return
        await runtime.require_store().record(
            Transition(
                event_id=event.event_id,
                request_id=event.workflow_id,
                status=event.payload.status,
                service=event.payload.service,
                detail=event.payload.detail,
                workflow=event.payload.workflow,
                at=event.occurred_at,
            )
        )

    # Each instance needs every event for the SSE clients connected to it: a group of
    # its own, from the latest offset (history comes from the store, not the topic).
    live_group = f"{consumer_group(settings, WORKFLOW_PROGRESS)}.live.{uuid.uuid4().hex[:12]}"

    async def on_live(records: Any) -> None:
        """Hand each event to the SSE clients following its request here (if any)."""
        for record in records:
            followed = (request_id := _request_id(record)) and runtime.live.following(request_id)
            if followed and (event := _lenient(record)) is not None:
                runtime.live.publish(event)

    on_live.__annotations__["records"] = undecoded_batch(WORKFLOW_PROGRESS)
    broker.subscriber(
        WORKFLOW_PROGRESS.qualified(settings.topic_prefix),
        group_id=live_group,
        auto_offset_reset="latest",
        ack_policy=AckPolicy.ACK_FIRST,
        batch=True,
        max_records=BATCH_MAX_RECORDS,
        batch_timeout_ms=BATCH_IDLE_MS,
        decoder=raw_records,
        title=f"{settings.service_name}:{WORKFLOW_PROGRESS.name}:live",
        description="Progress and tokens for this instance's SSE clients.",
    )(on_live)


def _request_id(record: Record) -> uuid.UUID | None:
    """The request a record belongs to, from its key (the workflow id)."""
    try:
        return uuid.UUID(record.key.decode()) if record.key else None
    except ValueError:
        return None


def _lenient(record: Record) -> Envelope[WorkflowUpdate] | None:
    """The topic's contract, or ``None``: the shared-group consumer already
    dead-letters what the contract refuses, once, so the live one just skips it."""
    try:
        return WORKFLOW_PROGRESS.adapter.validate_json(record.value or b"")  # type: ignore[no-any-return]
    except ValidationError:
        return None
