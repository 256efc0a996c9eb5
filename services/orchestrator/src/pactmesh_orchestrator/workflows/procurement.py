"""procurement: check a purchase request against the procurement policy."""

from __future__ import annotations

from typing import Any

from pactmesh_orchestrator.domain.graphs import single_tool_graph
from pactmesh_orchestrator.domain.registry import WorkflowDefinition
from pactmesh_orchestrator.domain.state import WorkflowState


def _report(state: WorkflowState, result: dict[str, Any]) -> dict[str, Any]:
    return {"flagged_items": result.get("flags", []), "within_policy": result.get("within_policy")}


WORKFLOW = WorkflowDefinition(
    name="procurement",
    description="Check a purchase request against the procurement policy.",
    build=lambda: single_tool_graph(
        step="check_policy",
        tool="procurement.check_policy",
        arguments=lambda s: {"amount": s.get("fields", {}).get("amount"), "text": s["text"]},
        finish=_report,
    ),
)
