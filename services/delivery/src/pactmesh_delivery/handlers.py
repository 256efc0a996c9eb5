"""The delivery service's Kafka subscriber."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from faststream.kafka import KafkaBroker
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import RequestStatus, WorkflowCompleted, WorkflowProgress
from pactmesh_contracts.topics import WORKFLOW_COMPLETED, WORKFLOWS, result_topic
from pactmesh_kit.broker import EventPublisher, Record, keyed_subscriber, refuse

from pactmesh_delivery.adapters.ledger import SqliteDeliveryLedger
from pactmesh_delivery.domain.results import result_for
from pactmesh_delivery.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Filled in by the app's lifespan."""

    settings: Settings
    publisher: EventPublisher
    ledger: SqliteDeliveryLedger | None = None

    def require_ledger(self) -> SqliteDeliveryLedger:
        """The ledger, or an error if used outside the app's lifespan."""
        if self.ledger is None:
            raise RuntimeError("the delivery ledger is not open")
        return self.ledger


def register(broker: KafkaBroker, runtime: Runtime) -> None:
    """Subscribe the delivery service's handler on ``broker``."""
    settings = runtime.settings

    @keyed_subscriber(broker, WORKFLOW_COMPLETED, settings)
    async def on_completed(event: Envelope[WorkflowCompleted], record: Record) -> None:
        """Publish the result on the workflow's result topic, once per workflow (in
        batches: results of different workflows are published concurrently)."""
        ledger = runtime.require_ledger()
        if await ledger.delivered(event.workflow_id):
            logger.info("result of %s already delivered", event.workflow_id)
            return
        if event.payload.workflow not in WORKFLOWS:
            raise refuse(
                record, settings, f"no result topic for workflow {event.payload.workflow!r}"
            )
        topic = result_topic(event.payload.workflow)
        result = result_for(event)
        await runtime.publisher.publish(result, topic=topic)
        await runtime.publisher.publish(
            event.follow(
                WorkflowProgress(
                    status=RequestStatus.DELIVERED,
                    service="delivery",
                    workflow=event.payload.workflow,
                    detail=f"published on {topic.qualified(settings.topic_prefix)}",
                )
            )
        )
        # Recorded last: a crash before this re-publishes (same result event id), never skips.
        await ledger.record(event.workflow_id, topic=topic.name, event_id=result.event_id)
