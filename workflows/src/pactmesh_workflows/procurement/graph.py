"""procurement's graph: validate → read → check_policy → draft_report → approval gate →
commit_order."""

from __future__ import annotations

import re
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pactmesh_contracts.actions.procurement import LineItem, PurchaseOrderAction
from pactmesh_contracts.tools.erp import ERP_CREATE_PURCHASE_ORDER, CreatePurchaseOrderArgs
from pactmesh_contracts.tools.procurement import PROCUREMENT_CHECK_POLICY, CheckPolicyArgs
from pactmesh_contracts.tools.procurement import LineItem as PolicyLine
from pydantic import ValidationError

from pactmesh_workflows.fields import states
from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.procurement import OVER_THRESHOLD, ProcurementInput, ProcurementOutput
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.state import WorkflowState, entry
from pactmesh_workflows.steps import (
    ToolCaller,
    add_gated_action,
    add_tool_or_fail,
    inputs,
    proposed_as,
    start_graph,
    tool_result,
    unless_ended,
)

_QUANTITY = re.compile(
    r"\b(\d{1,6})\s+([a-zA-Z][a-zA-Z-]*(?:\s(?!(?:from|for|at|by|to|with|in|on)\b)[a-zA-Z-]+)?)"
)
_VENDOR = re.compile(r"\bfrom\s+([A-Z][\w&.-]*(?:\s[A-Z][\w&.-]*)?)")
_NOT_ITEMS = {"days", "weeks", "months", "hours", "percent"}


def read_request(text: str, amount: float) -> PurchaseOrderAction:
    """The purchase order a request asks for: vendor, one line, and its total."""
    vendor_match = _VENDOR.search(text)
    vendor = vendor_match.group(1) if vendor_match else "unspecified vendor"
    quantity, description = 1, "items as described in the request"
    for match in _QUANTITY.finditer(text):
        if match.group(2).split()[0].lower() not in _NOT_ITEMS:
            quantity, description = int(match.group(1)), match.group(2)
            break
    unit_price = round(amount / quantity, 2)
    items = [LineItem(description=description, quantity=quantity, unit_price=unit_price)]
    total = round(unit_price * quantity, 2)
    return PurchaseOrderAction(vendor=vendor, items=items, amount=total)


async def _read(state: WorkflowState) -> WorkflowState:
    try:
        order = read_request(state["text"], inputs(state, ProcurementInput).amount)
    except ValidationError as exc:
        return {
            "outcome": "failed",
            "error": f"cannot read the request: {exc}"[:1000],
            "output": {},
        }
    return {
        "proposed_action": order.model_dump(mode="json"),
        "history": [entry("read_request", "read", f"{order.vendor}: {order.amount:g}")],
    }


def _lines(order: PurchaseOrderAction) -> list[PolicyLine]:
    return [
        PolicyLine(description=i.description, quantity=i.quantity, unit_price=i.unit_price)
        for i in order.items
    ]


def _check_arguments(state: WorkflowState) -> CheckPolicyArgs:
    order = proposed_as(state, PurchaseOrderAction)
    return CheckPolicyArgs(
        vendor=order.vendor,
        amount=order.amount,
        currency=order.currency,
        items=_lines(order),
        text=state["text"],
    )


def _commit_arguments(state: WorkflowState) -> CreatePurchaseOrderArgs:
    order = proposed_as(state, PurchaseOrderAction)
    return CreatePurchaseOrderArgs(
        vendor=order.vendor, items=_lines(order), amount=order.amount, currency=order.currency
    )


async def _report(state: WorkflowState) -> WorkflowState:
    flags = list(tool_result(state, "check_policy", PROCUREMENT_CHECK_POLICY).flags)
    blocked = [f for f in flags if "blocked" in f]
    if blocked:
        reason = "; ".join(blocked)
        return {
            "outcome": "rejected",
            "error": reason,
            "output": {"flagged_items": flags},
            "history": [entry("draft_report", "rejected", reason)],
        }
    return {
        "output": {"flagged_items": flags},
        "history": [entry("draft_report", "drafted", f"{len(flags)} flag(s)")],
    }


def stated_amount(state: WorkflowState) -> dict[str, Any]:
    """The gate's fact: the order's amount when the request states it, or states every
    line's quantity and unit price (the amount is their total, the action's contract
    checks); None otherwise, which makes the gate fire."""
    order = proposed_as(state, PurchaseOrderAction)
    text = state["text"]
    priced = all(states(text, i.quantity) and states(text, i.unit_price) for i in order.items)
    return {"stated_amount": order.amount if priced or states(text, order.amount) else None}


async def _finish(state: WorkflowState) -> WorkflowState:
    order = proposed_as(state, PurchaseOrderAction)
    po = tool_result(state, "commit_order", ERP_CREATE_PURCHASE_ORDER)
    output = ProcurementOutput(
        po_id=po.po_id,
        vendor=order.vendor,
        amount=order.amount,
        flagged_items=state.get("output", {}).get("flagged_items", []),
        approval=state.get("approval") or {},
    )
    return {"outcome": "succeeded", "output": output.model_dump(), "error": None}


def build_graph(
    *,
    checkpointer: BaseCheckpointSaver[Any] | None,
    tools: ToolCaller,
    models: Reasoning,
    gates: GatePolicy,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The procurement graph, compiled on ``checkpointer``."""
    graph = start_graph(ProcurementInput, first="read_request")
    graph.add_node("read_request", _read)
    unless_ended(graph, "read_request", "check_policy")
    add_tool_or_fail(
        graph,
        "check_policy",
        PROCUREMENT_CHECK_POLICY,
        _check_arguments,
        tools=tools,
        on_success="draft_report",
    )
    graph.add_node("draft_report", _report)
    unless_ended(graph, "draft_report", OVER_THRESHOLD.step)
    add_gated_action(
        graph,
        gate=gates.bind(OVER_THRESHOLD),
        step="commit_order",
        contract=ERP_CREATE_PURCHASE_ORDER,
        arguments=_commit_arguments,
        tools=tools,
        finish=_finish,
        facts=stated_amount,
    )
    return graph.compile(checkpointer=checkpointer)
