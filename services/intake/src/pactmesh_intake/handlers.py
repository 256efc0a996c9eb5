"""Intake's Kafka subscribers."""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import RequestSubmitted, WorkflowProgress
from pactmesh_contracts.topics import REQUESTS_INBOUND, WORKFLOW_PROGRESS
from pactmesh_kit.broker import subscriber

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
    async def on_progress(event: Envelope[WorkflowProgress]) -> None:
        """Record a status transition for ``GET /v1/requests/{id}``."""
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
