"""The hitl service's Kafka subscribers."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import ReviewRequested, WorkflowCompleted
from pactmesh_contracts.topics import REVIEWS_REQUESTED, WORKFLOW_COMPLETED
from pactmesh_kit.kafka import Kafka, Record

from pactmesh_hitl.domain.reviews import Review, ReviewState
from pactmesh_hitl.runtime import Runtime

logger = logging.getLogger(__name__)


def register(kafka: Kafka, runtime: Runtime) -> None:
    """Subscribe the hitl service's handlers."""

    @kafka.subscriber(REVIEWS_REQUESTED)
    async def on_review_requested(event: Envelope[ReviewRequested], record: Record) -> None:
        """Queue a review for reviewers (a redelivered request is stored once)."""
        request = event.payload
        await runtime.require_store().add(
            Review(
                review_id=request.review_id,
                workflow_id=event.workflow_id,
                workflow=request.workflow,
                tenant=event.tenant,
                rule=request.rule,
                summary=request.summary,
                action_type=request.action_type,
                proposed_action=dict(request.proposed_action),
                required_role=request.required_role,
                priority=request.priority,
                expires_at=request.expires_at,
                state=ReviewState.PENDING,
                requested_at=event.occurred_at,
                attempt=request.attempt,
                principal=event.principal,
                separation_of_duties=request.separation_of_duties,
                request_event_id=event.event_id,
            )
        )

    @kafka.subscriber(WORKFLOW_COMPLETED)
    async def on_workflow_completed(event: Envelope[WorkflowCompleted], record: Record) -> None:
        """Withdraw reviews of a workflow that has ended, so nobody acts on them."""
        withdrawn = await runtime.require_store().withdraw_for(
            event.workflow_id, now=datetime.now(UTC)
        )
        if withdrawn:
            logger.info("withdrew %d review(s) of ended workflow %s", withdrawn, event.workflow_id)
