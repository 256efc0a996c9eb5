"""support-triage: answer from the semantic cache or the knowledge base, or hand over
to a person.

A knowledge-base answer is redrafted for the requester by the ``drafting`` model, whose
tokens are streamed (LangGraph's custom stream; the engine publishes them). Answers are
cached per tenant: this flow answers general questions, personalises nothing and has no
side effect; a hand-over to a person (or an agent's answer) is never cached.
"""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.config import get_stream_writer
from langgraph.graph import END, StateGraph
from pactmesh_contracts.actions import TriageHandover
from pactmesh_reasoning.models import AllModelsFailed
from pactmesh_reasoning.semantic_cache import cacheable
from pydantic import BaseModel, ConfigDict

from pactmesh_orchestrator.domain.graphs import (
    Node,
    add_tool_with_retry,
    approval_gate,
    approved,
    start_graph,
    tool_ok,
    tool_result,
)
from pactmesh_orchestrator.domain.policy import GatePolicy
from pactmesh_orchestrator.domain.reasoning import Reasoning
from pactmesh_orchestrator.domain.registry import WorkflowDefinition
from pactmesh_orchestrator.domain.state import WorkflowState, entry

logger = logging.getLogger(__name__)

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
    """The substance: the knowledge-base article's answer, or the agent's text."""
    source: str
    """``knowledge_base``, ``cache`` or ``agent``."""
    article_id: str | None = None
    reply: str | None = None
    """The message drafted for the requester from ``answer`` (streamed token by token),
    when a drafting model wrote one."""
    drafted_by: str | None = None
    """The model that drafted ``reply``, when one did."""
    similarity: float | None = None
    """For ``cache``: the cosine between this question and the one answered before."""


DRAFT_STEP = "draft"
TOKEN = "token"
"""``kind`` of the custom-stream items the engine publishes as ``WorkflowToken``."""
_DRAFT_PROMPT = (
    "You answer customer support questions. Rewrite the knowledge-base article below "
    "as a short, friendly reply to the customer's question. Use only the article."
)


def _may_cache(state: WorkflowState) -> bool:
    """Only answers anyone in the tenant should get, never a hand-over to a person."""
    return not state.get("needs_human", False) and cacheable(
        workflow=NAME, personalised=False, side_effecting=False
    )


def _cache_lookup(reasoning: Reasoning) -> Node:
    async def cache_lookup(state: WorkflowState) -> dict[str, Any]:
        cache = reasoning.cache
        if cache is None or not _may_cache(state):
            return {"cached": None}
        hit = await cache.lookup(tenant=state.get("tenant", ""), question=state["text"])
        if hit is None:
            return {"cached": None, "history": [entry("cache_lookup", "miss")]}
        output = TriageOutput.model_validate(
            {**hit.answer, "source": "cache", "similarity": round(hit.similarity, 4)}
        )
        return {
            "cached": {"matched_question": hit.matched_question, "similarity": hit.similarity},
            "outcome": "succeeded",
            "output": output.model_dump(),
            "error": None,
            "history": [entry("cache_lookup", "hit", hit.matched_question)],
        }

    return cache_lookup


def _draft(reasoning: Reasoning) -> Node:
    async def draft(state: WorkflowState) -> dict[str, Any]:
        found = TriageOutput.model_validate(state["output"])
        write = get_stream_writer()
        messages = [
            SystemMessage(f"{_DRAFT_PROMPT}\n\nArticle: {found.answer}"),
            HumanMessage(state["text"]),
        ]
        pieces: list[str] = []
        spec: str | None = None
        restarts: list[dict[str, Any]] = []
        try:
            async for piece in reasoning.models.astream_answer("drafting", messages):
                if piece.restarted:  # the model broke off mid-answer: the next starts over
                    pieces, spec = [], piece.model
                    restarts.append(entry(DRAFT_STEP, "restarted", piece.model or "?"))
                    write({"kind": TOKEN, "step": DRAFT_STEP, "restarted_on": piece.model})
                spec = spec or piece.model
                write({"kind": TOKEN, "step": DRAFT_STEP, "seq": len(pieces), "text": piece.text})
                pieces.append(piece.text)
        except AllModelsFailed as exc:
            logger.warning("drafting failed, answering with the article: %s", exc)
            pieces = []
        write({"kind": TOKEN, "step": DRAFT_STEP, "seq": len(pieces), "text": "", "final": True})
        if not pieces:
            return {"history": [*restarts, entry(DRAFT_STEP, "kept_article")]}
        spec = spec or reasoning.models.config.role("drafting").primary.model
        output = found.model_copy(update={"reply": "".join(pieces).strip(), "drafted_by": spec})
        if reasoning.cache is not None and _may_cache(state):
            await reasoning.cache.store(
                tenant=state.get("tenant", ""), question=state["text"], answer=output.model_dump()
            )
        history = [*restarts, entry(DRAFT_STEP, "drafted", spec)]
        return {"output": output.model_dump(), "history": history}

    return draft


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


def build(policy: GatePolicy, reasoning: Reasoning | None = None) -> StateGraph[WorkflowState]:
    """validate → cache_lookup → search_kb (retry with a narrower query) → draft |
    human triage."""
    reasoning = reasoning or Reasoning()
    graph = start_graph(TriageInput, first="cache_lookup")
    graph.add_node("cache_lookup", _cache_lookup(reasoning))
    graph.add_conditional_edges(
        "cache_lookup", lambda s: END if s.get("outcome") else "search_kb", ["search_kb", END]
    )
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
    graph.add_node(DRAFT_STEP, _draft(reasoning))
    graph.add_edge(DRAFT_STEP, END)
    graph.add_node(
        "human_triage",
        approval_gate(
            workflow=NAME, step="human_triage", policy=policy, action_type="triage_handover.v1"
        ),
    )
    graph.add_node("agent_answer", _agent_answer)
    graph.add_conditional_edges(
        "decide",
        lambda s: DRAFT_STEP if s.get("outcome") else "human_triage",
        [DRAFT_STEP, "human_triage"],
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
