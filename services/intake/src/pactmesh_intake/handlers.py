"""Intake's Kafka subscribers."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from faststream.kafka import KafkaBroker
from faststream.kafka.message import KafkaMessage
from faststream.middlewares import AckPolicy
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import RequestSubmitted, WorkflowProgress
from pactmesh_contracts.topics import REQUESTS_INBOUND, WORKFLOW_PROGRESS, WorkflowUpdate
from pactmesh_kit.broker import consumer_group, subscriber
from pydantic import ValidationError

from pactmesh_intake.domain.intake import accept_inbound
from pactmesh_intake.domain.requests import Transition
from pactmesh_intake.runtime import Runtime

logger = logging.getLogger(__name__)


def register(broker: KafkaBroker, runtime: Runtime) -> None:
    """Subscribe intake's handlers on ``broker``."""
    settings = runtime.settings

    @subscriber(broker, REQUESTS_INBOUND, settings)
    async def on_inbound(event: Envelope[RequestSubmitted]) -> None:
        """Accept a request published by an upstream system."""
        if await accept_inbound(
            store=runtime.require_store(), publisher=runtime.publisher, event=event
        ):
            logger.info("accepted %s from the inbound topic", event.workflow_id)

    @subscriber(broker, WORKFLOW_PROGRESS, settings)
    async def on_progress(event: Envelope[WorkflowUpdate]) -> None:
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

    @broker.subscriber(
        WORKFLOW_PROGRESS.qualified(settings.topic_prefix),
        group_id=live_group,
        auto_offset_reset="latest",
        ack_policy=AckPolicy.ACK_FIRST,
        decoder=_lenient_decoder,
        title=f"{settings.service_name}:{WORKFLOW_PROGRESS.name}:live",
        description="Progress and tokens for this instance's SSE clients.",
    )
    async def on_live(event: Envelope[WorkflowUpdate] | None) -> None:
        """Hand the event to the SSE clients following its request here."""
        if event is not None:
            runtime.live.publish(event)


async def _lenient_decoder(msg: KafkaMessage, _original: Any = None) -> Any:
    """The topic's contract, or ``None``: the shared-group consumer already
    dead-letters what the contract refuses, once, so the live one just skips it."""
    try:
        return WORKFLOW_PROGRESS.adapter.validate_json(msg.body or b"")
    except ValidationError:
        return None
