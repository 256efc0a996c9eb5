"""support-triage's graph: validate → cache_lookup (when a cache may answer) → search_kb
(retry with a narrower query) → draft | human triage."""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_stream_writer
from langgraph.graph import END
from langgraph.graph.state import CompiledStateGraph
from pactmesh_contracts.actions.triage import TriageHandover
from pactmesh_contracts.tools.kb import KB_SEARCH, KbHit, KbSearchArgs
from pactmesh_contracts.usage import Usage
from pactmesh_reasoning.calls import PromptTemplate, model_calls
from pactmesh_reasoning.models import AllModelsFailed
from pactmesh_reasoning.semantic_cache import cacheable

from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.state import HistoryEntry, WorkflowState, entry
from pactmesh_workflows.steps import (
    Node,
    ToolCaller,
    add_tool_with_retry,
    approved,
    branch,
    gate_step,
    proposed_as,
    start_graph,
    tool_ok,
    tool_result,
)
from pactmesh_workflows.support_triage import HUMAN_TRIAGE, NAME, TriageInput, TriageOutput

logger = logging.getLogger(__name__)

MIN_CONFIDENCE = 0.3
"""Below this routing confidence, a person triages the request."""
MIN_SCORE = 0.5
"""Below this knowledge-base score, the best article is only a suggestion."""
DRAFT_STEP = "draft"
TOKEN = "token"
"""``kind`` of the custom-stream items the engine publishes as ``WorkflowToken``."""
_DRAFT_PROMPT = (
    "You answer customer support questions. Rewrite the knowledge-base article below "
    "as a short, friendly reply to the customer's question. Use only the article."
)
DRAFT_PROMPT = PromptTemplate(
    "support-triage.draft", "1", f"{_DRAFT_PROMPT}\n\nArticle: {{answer}}"
)
"""The drafting prompt, as the audit timeline names it."""


def _may_cache(state: WorkflowState) -> bool:
    """Only answers anyone in the tenant should get, never a hand-over to a person."""
    return not state.get("needs_human", False) and cacheable(
        workflow=NAME, personalised=False, side_effecting=False
    )


def _cache_lookup(reasoning: Reasoning) -> Node:
    async def cache_lookup(state: WorkflowState) -> WorkflowState:
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


def _over_budget(state: WorkflowState, found: TriageOutput, reason: str) -> WorkflowState:
    """Hand the request to a person instead of asking a model again."""
    why = f"{reason}: a person answers instead of the model"
    handover = TriageHandover(question=state["text"], reason=why, suggested_answer=found.answer)
    return {
        "output": {},
        "proposed_action": handover.model_dump(mode="json"),
        "history": [entry(DRAFT_STEP, "over_budget", why)],
    }


def _draft(reasoning: Reasoning) -> Node:
    async def draft(state: WorkflowState) -> WorkflowState:
        found = TriageOutput.model_validate(state["output"])
        spent = Usage.model_validate(state.get("usage") or {})
        budget = reasoning.budgets.of(state.get("tenant", ""))
        if (reason := budget.request_exceeded(spent)) is not None:
            return _over_budget(state, found, reason)
        write = get_stream_writer()
        messages = [
            SystemMessage(f"{_DRAFT_PROMPT}\n\nArticle: {found.answer}"),
            HumanMessage(state["text"]),
        ]
        pieces: list[str] = []
        spec: str | None = None
        restarts: list[HistoryEntry] = []
        try:
            with model_calls() as made:
                async for piece in reasoning.models.astream_answer(
                    "drafting", messages, template=DRAFT_PROMPT
                ):
                    if piece.restarted:  # the model broke off mid-answer: the next starts over
                        pieces, spec = [], piece.model
                        restarts.append(entry(DRAFT_STEP, "restarted", piece.model or "?"))
                        write({"kind": TOKEN, "step": DRAFT_STEP, "restarted_on": piece.model})
                    spec = spec or piece.model
                    write(
                        {"kind": TOKEN, "step": DRAFT_STEP, "seq": len(pieces), "text": piece.text}
                    )
                    pieces.append(piece.text)
        except AllModelsFailed as exc:
            logger.warning("drafting failed, answering with the article: %s", exc)
            pieces = []
        for call in made.calls:
            spent = spent + reasoning.prices.usage(
                call.model,
                input_tokens=call.input_tokens or 0,
                output_tokens=call.output_tokens or 0,
            )
        write({"kind": TOKEN, "step": DRAFT_STEP, "seq": len(pieces), "text": "", "final": True})
        if not pieces:
            return {
                "usage": spent.model_dump(),
                "history": [*restarts, entry(DRAFT_STEP, "kept_article")],
            }
        spec = spec or reasoning.models.config.role("drafting").primary.model
        output = found.model_copy(update={"reply": "".join(pieces).strip(), "drafted_by": spec})
        return {
            "output": output.model_dump(),
            "usage": spent.model_dump(),
            "history": [*restarts, entry(DRAFT_STEP, "drafted", spec)],
        }

    return draft


def _best_hit(state: WorkflowState) -> KbHit | None:
    if not tool_ok(state, "search_kb"):
        return None
    hits = tool_result(state, "search_kb", KB_SEARCH).hits
    return hits[0] if hits else None


def _handover_reason(state: WorkflowState, confidence: float) -> str:
    if state.get("needs_human", False):
        return "routing asked for a person to triage it"
    if not tool_ok(state, "search_kb"):
        return "knowledge base unavailable"
    if confidence < MIN_CONFIDENCE:
        return f"routing confidence {confidence:.2f} below {MIN_CONFIDENCE}"
    return "no article answers it confidently"


def _decide(reasoning: Reasoning) -> Node:
    async def decide(state: WorkflowState) -> WorkflowState:
        best = _best_hit(state)
        confidence = state.get("confidence", 1.0)
        to_a_person = state.get("needs_human", False)
        if best and best.score >= MIN_SCORE and confidence >= MIN_CONFIDENCE and not to_a_person:
            output = TriageOutput(answer=best.answer, source="knowledge_base", article_id=best.id)
            await _remember(reasoning, state, output)
            return {
                "outcome": "succeeded",
                "output": output.model_dump(),
                "error": None,
                "history": [entry("decide", "answered", best.id)],
            }
        return _hand_over(state, best, confidence)

    return decide


async def _remember(reasoning: Reasoning, state: WorkflowState, output: TriageOutput) -> None:
    """Cache the knowledge base's answer, and only it: the reply drafted next quotes the
    asker's own words, which another asker must never be served."""
    if reasoning.cache is not None and _may_cache(state):
        await reasoning.cache.store(
            tenant=state.get("tenant", ""), question=state["text"], answer=output.model_dump()
        )


def _hand_over(state: WorkflowState, best: KbHit | None, confidence: float) -> WorkflowState:
    reason = _handover_reason(state, confidence)
    handover = TriageHandover(
        question=state["text"], reason=reason, suggested_answer=best.answer if best else None
    )
    return {
        "proposed_action": handover.model_dump(mode="json"),
        "history": [entry("decide", "handover", reason)],
    }


async def _agent_answer(state: WorkflowState) -> WorkflowState:
    answer = proposed_as(state, TriageHandover).suggested_answer
    if not answer:
        return {"outcome": "rejected", "error": "the agent approved no answer", "output": {}}
    output = TriageOutput(answer=answer, source="agent")
    return {"outcome": "succeeded", "output": output.model_dump(), "error": None}


def build_graph(
    *,
    checkpointer: BaseCheckpointSaver[Any] | None,
    tools: ToolCaller,
    models: Reasoning,
    gates: GatePolicy,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The support-triage graph, compiled on ``checkpointer``."""

    def first(state: WorkflowState) -> str:
        """The cache is looked up only when there is one that may answer: otherwise
        the step would do nothing but cost a superstep and its checkpoint (0.5 CPU ms
        per run in ``bench/engine.py``, docs/benchmarks.md)."""
        return "cache_lookup" if models.cache is not None and _may_cache(state) else "search_kb"

    graph = start_graph(TriageInput, first=first, firsts=["cache_lookup", "search_kb"])
    graph.add_node("cache_lookup", _cache_lookup(models))
    branch(
        graph,
        "cache_lookup",
        lambda s: END if s.get("outcome") else "search_kb",
        ["search_kb", END],
    )
    add_tool_with_retry(
        graph,
        "search_kb",
        KB_SEARCH,
        lambda s: KbSearchArgs(query=s["text"], limit=3),
        tools=tools,
        retry_arguments=lambda s: KbSearchArgs(query=s["text"][:200], limit=1),
        on_success="decide",
        on_failure="decide",
    )
    graph.add_node("decide", _decide(models))
    graph.add_node(DRAFT_STEP, _draft(models))
    # A request whose budget is spent goes to a person instead of being drafted.
    branch(
        graph,
        DRAFT_STEP,
        lambda s: HUMAN_TRIAGE.step if s.get("proposed_action") else END,
        [END, HUMAN_TRIAGE.step],
    )
    graph.add_node(HUMAN_TRIAGE.step, gate_step(gates.bind(HUMAN_TRIAGE)))
    graph.add_node("agent_answer", _agent_answer)
    branch(
        graph,
        "decide",
        lambda s: DRAFT_STEP if s.get("outcome") else HUMAN_TRIAGE.step,
        [DRAFT_STEP, HUMAN_TRIAGE.step],
    )
    branch(
        graph,
        HUMAN_TRIAGE.step,
        lambda s: "agent_answer" if approved(s) else END,
        ["agent_answer", END],
    )
    graph.add_edge("agent_answer", END)
    return graph.compile(checkpointer=checkpointer)
