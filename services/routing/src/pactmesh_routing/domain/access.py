"""Who may start the workflow routing chose.

Intake refuses at the HTTP edge a workflow the caller *requested* but may not start;
routing checks the workflow it *chose* (a request asking for nothing can be routed to a
refund), and so also covers a ``RequestAccepted`` forged straight onto Kafka. A refused
request does not start its workflow: it ends as a rejected ``WorkflowCompleted``, which
delivery hands to the requester like any other result (result topic, webhooks, SSE,
status), and the refusal is audited.
"""

from __future__ import annotations

from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope, Principal
from pactmesh_contracts.events import (
    AuditRecorded,
    Outcome,
    RequestAccepted,
    RequestStatus,
    WorkflowCompleted,
    WorkflowProgress,
)

from pactmesh_routing.domain.decision import Decision

SERVICE = "routing"
REFUSED_ACTION = "workflow.start.refused"
"""The audit action of a refused start."""


class StartPolicy(Protocol):
    """Says which workflows a principal may start (``pactmesh_kit.auth.AccessPolicy``)."""

    def may_start(self, principal: Principal, workflow: str) -> bool:
        """True if ``principal`` may start ``workflow``."""
        ...


def start_refusal(*, policy: StartPolicy, principal: Principal, workflow: str) -> str | None:
    """Why ``principal`` may not start ``workflow``, or None if it may."""
    if policy.may_start(principal, workflow):
        return None
    return (
        f"principal {principal.subject!r} (roles {list(principal.roles)}, scopes "
        f"{list(principal.scopes)}) may not start workflow {workflow!r}"
    )


def refusal_events(
    *, request: Envelope[RequestAccepted], decision: Decision, reason: str
) -> list[Envelope[Any]]:
    """The audit record of a refused start, then the request's end: a rejected result
    that says why, and the ``failed`` status transition."""
    principal = request.principal
    audit = AuditRecorded(
        service=SERVICE,
        action=REFUSED_ACTION,
        detail={
            "workflow": decision.workflow,
            "requested_workflow": request.payload.requested_workflow,
            "routing_reason": decision.reason[:2000],
            "confidence": decision.confidence,
            "tenant": request.tenant,
            "principal": {
                "subject": principal.subject,
                "roles": list(principal.roles),
                "scopes": list(principal.scopes),
            },
            "reason": reason,
        },
    )
    error = f"refused by the access policy: {reason}"[:4000]
    completed = WorkflowCompleted(
        workflow=decision.workflow,
        outcome=Outcome.REJECTED,
        error=error,
        metadata=request.payload.metadata,
    )
    progress = WorkflowProgress(
        status=RequestStatus.FAILED,
        service=SERVICE,
        workflow=decision.workflow,
        detail=error[:2000],
    )
    return [request.follow(audit), request.follow(completed), request.follow(progress)]
