"""support-triage: answer from the knowledge base."""

from __future__ import annotations

from typing import Any

from pactmesh_orchestrator.domain.graphs import single_tool_graph
from pactmesh_orchestrator.domain.registry import WorkflowDefinition
from pactmesh_orchestrator.domain.state import WorkflowState


def _answer(state: WorkflowState, result: dict[str, Any]) -> dict[str, Any]:
    hits = result.get("hits", [])
    if not hits:
        return {"answer": None, "handover": "human-triage", "reason": "no article matched"}
    best = hits[0]
    return {"answer": best["answer"], "article_id": best["id"], "score": best["score"]}


WORKFLOW = WorkflowDefinition(
    name="support-triage",
    description="Answer a support question from the knowledge base.",
    build=lambda: single_tool_graph(
        step="search_kb",
        tool="kb.search",
        arguments=lambda s: {"query": s["text"], "limit": 3},
        finish=_answer,
    ),
)
