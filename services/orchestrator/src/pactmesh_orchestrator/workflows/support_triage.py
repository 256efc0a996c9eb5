"""support-triage: answer from the knowledge base, or hand over to a person."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, StateGraph
from pactmesh_contracts.actions import TriageHandover
from pydantic import BaseModel, ConfigDict

from pactmesh_orchestrator.domain.graphs import (
    add_tool_with_retry,
    approval_gate,
    approved,
    start_graph,
    tool_ok,
    tool_result,
)
from pactmesh_orchestrator.domain.policy import GatePolicy
from pactmesh_orchestrator.domain.registry import WorkflowDefinition
from pactmesh_orchestrator.domain.state import WorkflowState, entry

NAME = "support-triage"
MIN_CONFIDENCE = 0.3
"""Below this routing confidence, a person triages the request."""
MIN_SCORE = 0.5
"""Below this knowledge-base score, the best article is only a suggestion."""


class TriageInput(BaseModel):
    """Support triage needs nothing beyond the request text."""

    model_config = ConfigDict(extra="ignore")


class TriageOutput(BaseModel):
    """The answer sent to the requester, and where it came from."""

    model_config = ConfigDict(extra="forbid")

    answer: str
    source: str
    """``knowledge_base`` or ``agent``."""
    article_id: str | None = None


async def _decide(state: WorkflowState) -> dict[str, Any]:
    hits = tool_result(state, "search_kb").get("hits", []) if tool_ok(state, "search_kb") else []
    best = hits[0] if hits else None
    confidence = state.get("confidence", 1.0)
    routed_to_a_person = state.get("needs_human", False)
    if (
        best
        and best["score"] >= MIN_SCORE
        and confidence >= MIN_CONFIDENCE
        and not routed_to_a_person
    ):
        output = TriageOutput(answer=best["answer"], source="knowledge_base", article_id=best["id"])
        return {
            "outcome": "succeeded",
            "output": output.model_dump(),
            "error": None,
            "history": [entry("decide", "answered", best["id"])],
        }
    if routed_to_a_person:
        reason = "routing asked for a person to triage it"
    elif not tool_ok(state, "search_kb"):
        reason = "knowledge base unavailable"
    elif confidence < MIN_CONFIDENCE:
        reason = f"routing confidence {confidence:.2f} below {MIN_CONFIDENCE}"
    else:
        reason = "no article answers it confidently"
    handover = TriageHandover(
        question=state["text"], reason=reason, suggested_answer=best["answer"] if best else None
    )
    return {
        "proposed_action": handover.model_dump(mode="json"),
        "history": [entry("decide", "handover", reason)],
    }


async def _agent_answer(state: WorkflowState) -> dict[str, Any]:
    action = state.get("proposed_action") or {}
    answer = action.get("suggested_answer")
    if not answer:
        return {"outcome": "rejected", "error": "the agent approved no answer", "output": {}}
    output = TriageOutput(answer=answer, source="agent")
    return {"outcome": "succeeded", "output": output.model_dump(), "error": None}


def build(policy: GatePolicy) -> StateGraph[WorkflowState]:
    """validate → search_kb (retry with a narrower query) → answer | human triage."""
    graph = start_graph(TriageInput, first="search_kb")
    add_tool_with_retry(
        graph,
        "search_kb",
        "kb.search",
        lambda s: {"query": s["text"], "limit": 3},
        retry_arguments=lambda s: {"query": s["text"][:200], "limit": 1},
        on_success="decide",
        on_failure="decide",
    )
    graph.add_node("decide", _decide)
    graph.add_node(
        "human_triage",
        approval_gate(
            workflow=NAME, step="human_triage", policy=policy, action_type="triage_handover.v1"
        ),
    )
    graph.add_node("agent_answer", _agent_answer)
    graph.add_conditional_edges(
        "decide", lambda s: END if s.get("outcome") else "human_triage", ["human_triage", END]
    )
    graph.add_conditional_edges(
        "human_triage", lambda s: "agent_answer" if approved(s) else END, ["agent_answer", END]
    )
    graph.add_edge("agent_answer", END)
    return graph


WORKFLOW = WorkflowDefinition(
    name=NAME,
    description="Answer from the knowledge base, or hand over to a support agent.",
    input_model=TriageInput,
    output_model=TriageOutput,
    build=build,
)
