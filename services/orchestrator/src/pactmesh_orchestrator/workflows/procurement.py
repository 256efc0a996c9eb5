"""procurement: read a purchase request, check it against policy, report flagged items,
get approval above the threshold, then commit the purchase order in the ERP."""

from __future__ import annotations

import re
from typing import Any

from langgraph.graph import StateGraph
from pactmesh_contracts.actions import LineItem, PurchaseOrderAction
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pactmesh_orchestrator.domain.graphs import (
    action_fields,
    add_gated_action,
    add_tool_or_fail,
    start_graph,
    tool_result,
    unless_ended,
)
from pactmesh_orchestrator.domain.policy import GatePolicy
from pactmesh_orchestrator.domain.reasoning import Reasoning
from pactmesh_orchestrator.domain.registry import WorkflowDefinition
from pactmesh_orchestrator.domain.state import WorkflowState, entry

NAME = "procurement"
_QUANTITY = re.compile(
    r"\b(\d{1,6})\s+([a-zA-Z][a-zA-Z-]*(?:\s(?!(?:from|for|at|by|to|with|in|on)\b)[a-zA-Z-]+)?)"
)
_VENDOR = re.compile(r"\bfrom\s+([A-Z][\w&.-]*(?:\s[A-Z][\w&.-]*)?)")
_NOT_ITEMS = {"days", "weeks", "months", "hours", "percent"}


class ProcurementInput(BaseModel):
    """What routing must have extracted from a purchase request."""

    model_config = ConfigDict(extra="ignore")

    amount: float = Field(gt=0, le=100_000_000)
    """The order's total; a request without one cannot be checked against policy."""
    po_number: str | None = None


class ProcurementOutput(BaseModel):
    """The committed order and the flagged-items report."""

    model_config = ConfigDict(extra="forbid")

    po_id: str
    vendor: str
    amount: float
    flagged_items: list[str]
    approval: dict[str, Any]


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


async def _read(state: WorkflowState) -> dict[str, Any]:
    try:
        order = read_request(state["text"], state["fields"]["amount"])
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


async def _report(state: WorkflowState) -> dict[str, Any]:
    check = tool_result(state, "check_policy")
    flags = list(check.get("flags", []))
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


async def _finish(state: WorkflowState) -> dict[str, Any]:
    order = state["proposed_action"] or {}
    po = tool_result(state, "commit_order")
    output = ProcurementOutput(
        po_id=po["po_id"],
        vendor=order["vendor"],
        amount=order["amount"],
        flagged_items=state.get("output", {}).get("flagged_items", []),
        approval=state.get("approval") or {},
    )
    return {"outcome": "succeeded", "output": output.model_dump(), "error": None}


def build(policy: GatePolicy, reasoning: Reasoning | None = None) -> StateGraph[WorkflowState]:
    """validate → read → check_policy → draft_report → approval gate → commit_order."""
    graph = start_graph(ProcurementInput, first="read_request")
    graph.add_node("read_request", _read)
    unless_ended(graph, "read_request", "check_policy")
    add_tool_or_fail(
        graph,
        "check_policy",
        "procurement.check_policy",
        lambda s: {**action_fields("vendor", "amount", "currency", "items")(s), "text": s["text"]},
        on_success="draft_report",
    )
    graph.add_node("draft_report", _report)
    unless_ended(graph, "draft_report", "approve_purchase_order")
    add_gated_action(
        graph,
        workflow=NAME,
        policy=policy,
        gate="approve_purchase_order",
        action_type="purchase_order.v1",
        step="commit_order",
        tool="erp.create_purchase_order",
        arguments=action_fields("vendor", "items", "amount", "currency"),
        finish=_finish,
    )
    return graph


WORKFLOW = WorkflowDefinition(
    name=NAME,
    description="Check a purchase request against policy, approve above a threshold, commit it.",
    input_model=ProcurementInput,
    output_model=ProcurementOutput,
    build=build,
)
