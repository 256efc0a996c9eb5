"""Per-request budgets inside a workflow: the tokens a request spent travel in its state,
and a step that would call a model once the budget is spent hands the request to a
person instead (support triage's drafting step)."""

from __future__ import annotations

from pactmesh_contracts.usage import Budget, Budgets, Usage
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.registry import registry
from pactmesh_workflows.support_triage import HUMAN_TRIAGE
from pactmesh_workflows.testing import GraphRun, ScriptedTools

ARTICLE = {"id": "kb-1", "title": "Reset", "answer": "Use the reset link.", "score": 0.9}


def _run(budget: Budget) -> GraphRun:
    return GraphRun(
        registry()["support-triage"],
        tools=ScriptedTools({"kb.search": {"hits": [ARTICLE]}}),
        models=Reasoning(budgets=Budgets(tenants={"acme": budget})),
    )


async def test_drafting_counts_its_tokens_in_the_request_usage() -> None:
    run = _run(Budget(tokens_per_request=100_000))
    state = await run.start("How do I reset my password?")
    assert state["outcome"] == "succeeded"
    assert state["output"]["drafted_by"] == "pactmesh-offline:default"
    spent = Usage.model_validate(state["usage"])
    assert spent.input_tokens > 0
    assert spent.output_tokens > 0
    assert await run.review() is None


async def test_a_spent_budget_hands_the_request_to_a_person_instead_of_the_model() -> None:
    run = _run(Budget(tokens_per_request=0))
    state = await run.start("How do I reset my password?")
    review = await run.review()
    assert review is not None
    assert review.rule == HUMAN_TRIAGE.rule
    assert "per-request token budget of 0 reached" in review.proposed_action["reason"]
    assert review.proposed_action["suggested_answer"] == ARTICLE["answer"]
    assert ("draft", "over_budget") in await run.history()
    assert Usage.model_validate(state.get("usage") or {}).tokens == 0, "no model was asked"
