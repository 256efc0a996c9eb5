"""Whether an event may resume a run: it must answer what the run's checkpoint waits for.

Kafka's ACLs let only the tools service write tool results (and the orchestrator itself,
answering a call past its deadline with a timeout: ``timers``) and only hitl write review
decisions; these checks hold whoever wrote the event (a plaintext development cluster
has no ACLs, and a bug upstream is no credential) to what the run asked:

* the event is of the run's tenant, and acts for the run's principal (``requester``);
* a tool result answers a call the run waits for: its call id (which names the step)
  and its tool;
* a review decision answers the review the run waits for, by a reviewer whose
  principal the gate and the access policy allow (the gate's role, the review action),
  who is not the person the run acts for when the gate separates duties; an expiry
  comes no earlier than the review's deadline.

Ids are unguessable (``pactmesh_workflows.state.call_id_for``), so an answer naming an
id the run never asked is not a late duplicate but a forgery. A genuine answer arriving
again (a redelivery) names an id the run did ask, and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Protocol

from pactmesh_contracts.envelope import Envelope, Principal
from pactmesh_contracts.events import (
    ReviewDecided,
    ReviewDecision,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
)
from pactmesh_workflows.state import WorkflowState

EXPIRY_SKEW = timedelta(seconds=30)
"""How far hitl's clock may run ahead of this one: an expiry earlier than this before
the deadline is refused."""

Answer = ToolCallCompleted | ToolCallFailed | ReviewDecided
Pause = ToolCallRequested | ReviewRequested


class ReviewerPolicy(Protocol):
    """Who may decide a review (``pactmesh_kit.auth.AccessPolicy`` says)."""

    def may_review(self, principal: Principal, action: str, *, gate_role: str) -> bool:
        """True if ``principal`` holds ``gate_role`` and may take review ``action``."""
        ...


def requester_of(values: WorkflowState) -> Principal | None:
    """The principal the run acts for (None for runs started before it was recorded)."""
    recorded = values.get("requester")
    return Principal.model_validate(recorded, strict=False) if recorded is not None else None


def envelope_refusal(event: Envelope[Any], values: WorkflowState) -> str | None:
    """Why ``event``'s tenant or principal may not resume the run; None if they may."""
    if event.tenant != values.get("tenant"):
        return f"the event is for tenant {event.tenant!r}; the run is {values.get('tenant')!r}'s"
    requester = requester_of(values)
    if requester is not None and event.principal != requester:
        return (
            f"the event acts for {event.principal.subject!r}; "
            f"the run acts for {requester.subject!r}"
        )
    return None


def answer_refusal(
    answer: Answer,
    asked: Pause,
    *,
    requester: Principal | None,
    policy: ReviewerPolicy,
    now: datetime,
) -> str | None:
    """Why ``answer`` does not answer ``asked``, the pause it names; None if it does."""
    if isinstance(asked, ToolCallRequested):
        if isinstance(answer, ReviewDecided):
            return f"a review decision names tool call {asked.call_id}"
        if answer.tool != asked.tool:
            return f"call {asked.call_id} asked {asked.tool!r}, not {answer.tool!r}"
        return None
    if not isinstance(answer, ReviewDecided):
        return f"a tool result names review {asked.review_id}"
    return _decision_refusal(answer, asked, requester=requester, policy=policy, now=now)


def _decision_refusal(
    decided: ReviewDecided,
    asked: ReviewRequested,
    *,
    requester: Principal | None,
    policy: ReviewerPolicy,
    now: datetime,
) -> str | None:
    if decided.decision is ReviewDecision.EXPIRE:
        if now < asked.expires_at - EXPIRY_SKEW:
            return f"an expiry before the review's deadline {asked.expires_at.isoformat()}"
        return None
    by = decided.decided_by
    if by is None:
        return "the decision names no reviewer principal"
    if by.subject != decided.reviewer:
        return f"reviewer {decided.reviewer!r} is not the principal {by.subject!r} it names"
    action = decided.decision.value
    if not policy.may_review(by, action, gate_role=asked.required_role):
        return (
            f"{by.subject!r} (roles {list(by.roles)}) may not {action} a review "
            f"that needs a {asked.required_role!r}"
        )
    if asked.separation_of_duties and requester is not None and by.subject == requester.subject:
        return f"{by.subject!r} may not decide a review of their own request"
    return None
