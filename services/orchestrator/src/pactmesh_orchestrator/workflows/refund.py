"""refund: look the order up, validate the proposed amount against the refund policy,
get approval above the automatic limit, then pay it. An amount outside the policy is
never executed: it goes to review with the reason, and only an in-policy edit pays."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, StateGraph
from langgraph.types import interrupt
from pactmesh_contracts.actions import RefundAction
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pactmesh_orchestrator.domain.graphs import (
    action_fields,
    add_gated_action,
    add_tool_or_fail,
    start_graph,
    tool_result,
)
from pactmesh_orchestrator.domain.policy import GatePolicy
from pactmesh_orchestrator.domain.reasoning import Reasoning
from pactmesh_orchestrator.domain.registry import WorkflowDefinition
from pactmesh_orchestrator.domain.state import ReviewAnswer, ReviewRequest, WorkflowState, entry

NAME = "refund"
MAX_REFUND = 1_000.0
"""The refund policy's ceiling, whatever the order's total."""
OUT_OF_POLICY_ROLE = "support-lead"
OUT_OF_POLICY_TIMEOUT_S = 86_400.0


class RefundInput(BaseModel):
    """The order to refund and, when the requester named one, the amount."""

    model_config = ConfigDict(extra="ignore")

    order_id: str = Field(pattern=r"^\d{3,12}$")
    amount: float | None = None


class RefundOutput(BaseModel):
    """The refund that was paid."""

    model_config = ConfigDict(extra="forbid")

    refund_id: str
    order_id: str
    amount: float
    approval: dict[str, Any]


def policy_violation(amount: float, order_total: float) -> str | None:
    """Why ``amount`` may not be refunded for an order of ``order_total``, if it may not."""
    if amount <= 0:
        return f"amount {amount:g} is not positive"
    if amount > order_total:
        return f"amount {amount:g} exceeds the order total {order_total:g}"
    if amount > MAX_REFUND:
        return f"amount {amount:g} exceeds the refund limit {MAX_REFUND:g}"
    return None


async def _propose(state: WorkflowState) -> dict[str, Any]:
    order = tool_result(state, "lookup_order")
    requested = state["fields"].get("amount")
    amount = float(requested) if requested is not None else float(order["total"])
    return {
        "proposed_action": {
            "action_type": "refund.v1",
            "order_id": order["order_id"],
            "amount": amount,
            "currency": order.get("currency", "USD"),
            "reason": state["text"][:500],
        },
        "history": [entry("propose_refund", "proposed", f"{amount:g} of {order['total']:g}")],
    }


async def _check_policy(state: WorkflowState) -> dict[str, Any]:
    """Out-of-policy amounts stop here for a person; approving them as-is never pays."""
    action = dict(state["proposed_action"] or {})
    total = float(tool_result(state, "lookup_order")["total"])
    violation = policy_violation(float(action["amount"]), total)
    if violation is None:
        return {"history": [entry("check_refund_policy", "within_policy")]}
    review = ReviewRequest(
        step="check_refund_policy",
        attempt=0,
        rule="refund.amount_out_of_policy",
        summary=f"Refund outside policy: {violation}. Edit the amount, or reject.",
        action_type="refund.v1",
        proposed_action=action,
        required_role=OUT_OF_POLICY_ROLE,
        expires_at=_expiry(),
    )
    answer = ReviewAnswer.model_validate(interrupt(review.model_dump()))
    history = [entry("check_refund_policy", "out_of_policy", violation)]
    if answer.decision == "edit" and answer.edited_action:
        try:
            edited = RefundAction.model_validate_json(_dumps(answer.edited_action))
        except ValidationError as exc:
            reason = f"refund not executed: the edit is invalid ({exc.error_count()} error(s))"
            return {
                "outcome": "rejected",
                "error": reason,
                "output": {},
                "history": [*history, entry("check_refund_policy", "rejected", reason)],
            }
        still = policy_violation(edited.amount, total)
        if still is None and edited.order_id == action["order_id"]:
            return {
                "proposed_action": edited.model_dump(mode="json"),
                "approval": {"decision": "edit", "rule": review.rule, "reviewer": answer.reviewer},
                "history": [*history, entry("check_refund_policy", "edited", answer.reviewer)],
            }
        violation = still or "the edit changed the order"
    reason = f"refund not executed: {violation} ({answer.decision} by {answer.reviewer})"
    return {
        "outcome": "rejected",
        "error": reason,
        "output": {},
        "history": [*history, entry("check_refund_policy", "rejected", reason)],
    }


def _expiry() -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) + timedelta(seconds=OUT_OF_POLICY_TIMEOUT_S)).isoformat()


def _dumps(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data)


async def _finish(state: WorkflowState) -> dict[str, Any]:
    action = state["proposed_action"] or {}
    paid = tool_result(state, "execute_refund")
    output = RefundOutput(
        refund_id=paid["refund_id"],
        order_id=action["order_id"],
        amount=action["amount"],
        approval=state.get("approval") or {},
    )
    return {"outcome": "succeeded", "output": output.model_dump(), "error": None}


def _after_policy_check(state: WorkflowState) -> str:
    if state.get("outcome"):
        return END
    # A lead who edited an out-of-policy amount has already approved the refund.
    return "execute_refund" if state.get("approval") else "approve_refund"


def build(policy: GatePolicy, reasoning: Reasoning | None = None) -> StateGraph[WorkflowState]:
    """validate → lookup_order → propose → policy check → approval gate → pay."""
    graph = start_graph(RefundInput, first="lookup_order")
    add_tool_or_fail(
        graph,
        "lookup_order",
        "crm.get_order",
        lambda s: {"order_id": s["fields"]["order_id"]},
        on_success="propose_refund",
    )
    graph.add_node("propose_refund", _propose)
    graph.add_edge("propose_refund", "check_refund_policy")
    graph.add_node("check_refund_policy", _check_policy)
    graph.add_conditional_edges(
        "check_refund_policy", _after_policy_check, ["approve_refund", "execute_refund", END]
    )
    add_gated_action(
        graph,
        workflow=NAME,
        policy=policy,
        gate="approve_refund",
        action_type="refund.v1",
        step="execute_refund",
        tool="payments.refund",
        arguments=action_fields("order_id", "amount", "currency", "reason"),
        finish=_finish,
    )
    return graph


WORKFLOW = WorkflowDefinition(
    name=NAME,
    description="Refund within policy; out-of-policy amounts go to review, never paid as-is.",
    input_model=RefundInput,
    output_model=RefundOutput,
    build=build,
)
