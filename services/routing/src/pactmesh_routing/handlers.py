"""Routing's Kafka subscriber."""

from __future__ import annotations

import logging

from faststream.kafka import KafkaBroker
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import (
    RequestAccepted,
    RequestRouted,
    RequestStatus,
    WorkflowProgress,
)
from pactmesh_contracts.topics import REQUESTS_ACCEPTED, WORKFLOWS
from pactmesh_kit.broker import EventPublisher, subscriber

from pactmesh_routing.domain.classifier import classify
from pactmesh_routing.settings import Settings

logger = logging.getLogger(__name__)


def register(broker: KafkaBroker, settings: Settings, publisher: EventPublisher) -> None:
    """Subscribe routing's handler on ``broker``."""

    @subscriber(broker, REQUESTS_ACCEPTED, settings)
    async def on_accepted(event: Envelope[RequestAccepted]) -> None:
        """Classify an accepted request and publish the routing decision."""
        request = event.payload
        decision = classify(
            text=request.text,
            known_workflows=WORKFLOWS,
            fallback=settings.fallback_workflow,
            requested=request.requested_workflow,
        )
        routed = RequestRouted(
            workflow=decision.workflow,
            confidence=decision.confidence,
            reason=decision.reason,
            text=request.text,
            fields=decision.fields,
            metadata=request.metadata,
        )
        await publisher.publish(event.follow(routed))
        await publisher.publish(
            event.follow(
                WorkflowProgress(
                    status=RequestStatus.ROUTED,
                    service="routing",
                    workflow=decision.workflow,
                    detail=f"{decision.workflow} ({decision.confidence:.2f}): {decision.reason}"[
                        :2000
                    ],
                )
            )
        )
        logger.info(
            "routed %s to %s (%.2f)", event.workflow_id, decision.workflow, decision.confidence
        )
