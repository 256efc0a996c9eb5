"""refund: look the order up; the refund proposal is checked against policy later."""

from __future__ import annotations

from typing import Any

from pactmesh_orchestrator.domain.graphs import single_tool_graph
from pactmesh_orchestrator.domain.registry import WorkflowDefinition
from pactmesh_orchestrator.domain.state import WorkflowState


def _summary(state: WorkflowState, result: dict[str, Any]) -> dict[str, Any]:
    return {"order": result, "requested_amount": state.get("fields", {}).get("amount")}


WORKFLOW = WorkflowDefinition(
    name="refund",
    description="Look up the order a refund request is about.",
    build=lambda: single_tool_graph(
        step="lookup_order",
        tool="crm.get_order",
        arguments=lambda s: {"order_id": str(s.get("fields", {}).get("order_id", ""))},
        finish=_summary,
    ),
)
