"""A workflow's graph driven on its own with scripted tools (``pactmesh_workflows.testing``):
what each workflow's graph unit tests build on."""

from __future__ import annotations

from typing import Any

from pactmesh_contracts.events import ReviewDecision, ToolErrorCode
from pactmesh_workflows.registry import registry
from pactmesh_workflows.testing import Failure, GraphRun, ScriptedTools

ORDER = {
    "order_id": "4411",
    "status": "delivered",
    "total": 500.0,
    "currency": "USD",
    "items": ["kettle"],
    "customer_id": "C-1",
}


def _tools(**answers: Any) -> ScriptedTools:
    defaults: dict[str, Any] = {
        "crm.get_order": ORDER,
        "payments.refund": lambda a: {"refund_id": "RF-1", "amount": a["amount"]},
    }
    return ScriptedTools({**defaults, **answers})


async def test_a_graph_runs_through_its_tool_steps_with_scripted_answers() -> None:
    tools = _tools()
    run = GraphRun(registry()["refund"], tools=tools)

    state = await run.start("Refund $50 for order 4411", order_id="4411", amount=50.0)

    assert state["outcome"] == "succeeded"
    assert [c.tool for c in tools.calls] == ["crm.get_order", "payments.refund"]
    [paid] = tools.made("payments.refund")
    assert paid.idempotency_key == f"{run.workflow_id}:execute_refund"
    assert paid.arguments["amount"] == 50.0


async def test_a_review_is_answered_as_hitl_would() -> None:
    tools = _tools()
    run = GraphRun(registry()["refund"], tools=tools)

    await run.start("Refund $800 for order 4411", order_id="4411", amount=800.0)
    review = await run.review()
    assert review is not None
    assert review.rule == "refund.amount_out_of_policy"
    state = await run.decide(
        ReviewDecision.EDIT, edited_action={**review.proposed_action, "amount": 150.0}
    )

    assert state["outcome"] == "succeeded"
    assert tools.made("payments.refund")[0].arguments["amount"] == 150.0
    assert await run.review() is None


async def test_scripted_failures_take_the_recovery_path() -> None:
    tools = _tools()
    tools.queued["crm.get_order"] = [Failure(), Failure(ToolErrorCode.TIMEOUT, "slow")]
    run = GraphRun(registry()["refund"], tools=tools)

    state = await run.start("Refund order 4411", order_id="4411")

    assert state["outcome"] == "failed"
    assert "lookup_order: timeout slow" in (state.get("error") or "")
    assert ("lookup_order_retry", "tool_failed") in await run.history()
