"""refund's graph: validate → lookup_order → propose → policy check → approval gate → pay."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END
from langgraph.graph.state import CompiledStateGraph
from pactmesh_contracts.actions.refund import RefundAction
from pactmesh_contracts.tools.crm import CRM_GET_ORDER, GetOrderArgs
from pactmesh_contracts.tools.payments import PAYMENTS_REFUND, RefundArgs

from pactmesh_workflows.fields import states
from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.refund import OUT_OF_POLICY, OVER_AUTO_LIMIT, RefundInput, RefundOutput
from pactmesh_workflows.state import WorkflowState, entry
from pactmesh_workflows.steps import (
    ToolCaller,
    add_gated_action,
    add_tool_or_fail,
    branch,
    gate_step,
    inputs,
    proposed_as,
    start_graph,
    tool_result,
)


def _order_total(state: WorkflowState) -> dict[str, Any]:
    return {"order_total": tool_result(state, "lookup_order", CRM_GET_ORDER).total}


def stated_amount(state: WorkflowState) -> dict[str, Any]:
    """The auto-limit gate's fact: the refund's amount when the request states it or it
    is the order's total from the CRM; None otherwise, which makes the gate fire."""
    amount = proposed_as(state, RefundAction).amount
    total = tool_result(state, "lookup_order", CRM_GET_ORDER).total
    grounded = abs(amount - total) < 0.005 or states(state["text"], amount)
    return {"stated_amount": amount if grounded else None}


async def _propose(state: WorkflowState) -> WorkflowState:
    order = tool_result(state, "lookup_order", CRM_GET_ORDER)
    requested = inputs(state, RefundInput).amount
    amount = requested if requested is not None else order.total
    return {
        "proposed_action": {
            "action_type": "refund.v1",
            "order_id": order.order_id,
            "amount": amount,
            "currency": order.currency,
            "reason": state["text"][:500],
        },
        "history": [entry("propose_refund", "proposed", f"{amount:g} of {order.total:g}")],
    }


def _refund_arguments(state: WorkflowState) -> RefundArgs:
    action = proposed_as(state, RefundAction)
    return RefundArgs(
        order_id=action.order_id,
        amount=action.amount,
        currency=action.currency,
        reason=action.reason,
    )


async def _finish(state: WorkflowState) -> WorkflowState:
    action = proposed_as(state, RefundAction)
    paid = tool_result(state, "execute_refund", PAYMENTS_REFUND)
    output = RefundOutput(
        refund_id=paid.refund_id,
        order_id=action.order_id,
        amount=action.amount,
        approval=state.get("approval") or {},
    )
    return {"outcome": "succeeded", "output": output.model_dump(), "error": None}


def _after_policy_check(state: WorkflowState) -> str:
    if state.get("outcome"):
        return END
    # A lead who edited an out-of-policy amount has already approved the refund.
    return "execute_refund" if state.get("approval") else OVER_AUTO_LIMIT.step


def build_graph(
    *,
    checkpointer: BaseCheckpointSaver[Any] | None,
    tools: ToolCaller,
    models: Reasoning,
    gates: GatePolicy,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The refund graph, compiled on ``checkpointer``."""
    graph = start_graph(RefundInput, first="lookup_order")
    add_tool_or_fail(
        graph,
        "lookup_order",
        CRM_GET_ORDER,
        lambda s: GetOrderArgs(order_id=inputs(s, RefundInput).order_id),
        tools=tools,
        on_success="propose_refund",
    )
    graph.add_node("propose_refund", _propose)
    graph.add_edge("propose_refund", OUT_OF_POLICY.step)
    graph.add_node(OUT_OF_POLICY.step, gate_step(gates.bind(OUT_OF_POLICY), facts=_order_total))
    branch(
        graph,
        OUT_OF_POLICY.step,
        _after_policy_check,
        [OVER_AUTO_LIMIT.step, "execute_refund", END],
    )
    add_gated_action(
        graph,
        gate=gates.bind(OVER_AUTO_LIMIT),
        step="execute_refund",
        contract=PAYMENTS_REFUND,
        arguments=_refund_arguments,
        tools=tools,
        finish=_finish,
        facts=stated_amount,
    )
    return graph.compile(checkpointer=checkpointer)
