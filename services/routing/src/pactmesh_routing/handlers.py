"""Routing's Kafka subscriber."""

from __future__ import annotations

import logging

from opentelemetry import trace
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import (
    AuditRequestRouted,
    RequestAccepted,
    RequestRouted,
    RequestStatus,
    WorkflowProgress,
)
from pactmesh_contracts.topics import REQUESTS_ACCEPTED
from pactmesh_kit.audit import audit_of, model_called, total_usage
from pactmesh_kit.kafka import EventPublisher, Kafka, Record
from pactmesh_reasoning.calls import model_calls

from pactmesh_routing.domain.access import refusal_events, start_refusal
from pactmesh_routing.domain.decision import Decision
from pactmesh_routing.runtime import Runtime

logger = logging.getLogger(__name__)

SERVICE = "routing"


def register(kafka: Kafka, runtime: Runtime) -> None:
    """Subscribe routing's handler."""
    publisher, router, policy = runtime.publisher, runtime.router, runtime.policy
    prices = runtime.settings.model_prices

    @kafka.subscriber(REQUESTS_ACCEPTED)
    async def on_accepted(event: Envelope[RequestAccepted], record: Record) -> None:
        """Route an accepted request and publish the decision, with its reason; end it
        instead, refused, when its principal may not start the workflow chosen (in
        batches: requests are routed concurrently, one commit per batch)."""
        request = event.payload
        with model_calls() as made:
            decision = await router.route(text=request.text, requested=request.requested_workflow)
        audits = [
            event.follow(
                model_called(c, service=SERVICE, workflow=decision.workflow, prices=prices)
            )
            for c in made.calls
        ]
        reason = start_refusal(policy=policy, principal=event.principal, workflow=decision.workflow)
        if reason is not None:
            await publisher.publish_all(audits)
            await _refuse(publisher, event, decision, reason)
            return
        routed = RequestRouted(
            workflow=decision.workflow,
            confidence=decision.confidence,
            reason=decision.reason,
            needs_human=decision.human_triage,
            text=request.text,
            fields=decision.fields,
            metadata=request.metadata,
            usage=total_usage(made.calls, prices),
        )
        detail = f"{decision.workflow} ({decision.confidence:.2f}): {decision.reason}"
        progress = WorkflowProgress(
            status=RequestStatus.ROUTED,
            service="routing",
            workflow=decision.workflow,
            detail=detail[:2000],
        )
        await publisher.publish_all(
            [
                *audits,
                event.follow(routed_audit(decision)),
                event.follow(routed),
                event.follow(progress),
            ]
        )
        logger.info(
            "routed %s to %s (%.2f%s) by %s",
            event.workflow_id,
            decision.workflow,
            decision.confidence,
            ", human triage" if decision.human_triage else "",
            decision.model or "the submitter's request",
        )


def routed_audit(decision: Decision) -> AuditRequestRouted:
    """The timeline's record of the decision."""
    return audit_of(AuditRequestRouted, decision, needs_human=decision.human_triage)


async def _refuse(
    publisher: EventPublisher, event: Envelope[RequestAccepted], decision: Decision, reason: str
) -> None:
    logger.warning(
        "refused to start %s for %s (principal %s, tenant %s): %s",
        decision.workflow,
        event.workflow_id,
        event.principal.subject,
        event.tenant,
        reason,
    )
    trace.get_current_span().add_event(
        "workflow.start.refused",
        {"pactmesh.workflow": decision.workflow, "pactmesh.reason": reason},
    )
    for refusal in refusal_events(request=event, decision=decision, reason=reason):
        await publisher.publish(refusal)
