"""supply-chain-reroute: quote alternative routes for a disrupted shipment."""

from __future__ import annotations

from typing import Any

from pactmesh_orchestrator.domain.graphs import single_tool_graph
from pactmesh_orchestrator.domain.registry import WorkflowDefinition
from pactmesh_orchestrator.domain.state import WorkflowState


def _choose(state: WorkflowState, result: dict[str, Any]) -> dict[str, Any]:
    quotes = sorted(result.get("quotes", []), key=lambda q: (q["cost"], q["days"]))
    return {"quotes": quotes, "chosen": quotes[0] if quotes else None}


WORKFLOW = WorkflowDefinition(
    name="supply-chain-reroute",
    description="Quote alternative routes for a disrupted shipment and pick the cheapest.",
    build=lambda: single_tool_graph(
        step="quote_routes",
        tool="carriers.quote",
        arguments=lambda s: {"shipment_id": s.get("fields", {}).get("shipment_id") or "unknown"},
        finish=_choose,
    ),
)
