"""Checkpoints written by an earlier format load, resume and finish correctly.

``data/format-0-checkpoints.sqlite3`` holds runs paused at tool calls and at reviews,
written by the orchestrator before checkpoints carried a format version (see
``data/make_format_0_checkpoints.py``); ``data/format-0-runs.json`` says what each waits
for. Each run is resumed here as the tools and hitl services would, on a copy of the file.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pactmesh_contracts.envelope import Envelope, Principal
from pactmesh_contracts.events import (
    Outcome,
    RequestRouted,
    ReviewDecided,
    ReviewDecision,
    ToolCallCompleted,
    ToolCallRequested,
    WorkflowCompleted,
)
from pactmesh_contracts.topics import REVIEWS_REQUESTED, TOOL_CALLS
from pactmesh_kit.auth import load_access_policy
from pactmesh_orchestrator.adapters.sqlite_store import open_sqlite_store
from pactmesh_orchestrator.domain.engine import Engine, call_id_for
from pactmesh_orchestrator.domain.workflows import build_graphs
from pactmesh_orchestrator.testing import CollectingPublisher
from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.state import FORMAT_VERSION

DATA = Path(__file__).resolve().parent / "data"
RUNS = {r["name"]: r for r in json.loads((DATA / "format-0-runs.json").read_text())}

TOOL_ANSWERS: dict[str, Any] = {
    "crm.get_order": {
        "order_id": "4411",
        "status": "delivered",
        "total": 500.0,
        "currency": "USD",
        "items": ["espresso machine"],
        "customer_id": "C-1001",
    },
    "payments.refund": lambda a: {"refund_id": "RF-9", "amount": a["amount"]},
    "erp.create_purchase_order": lambda a: {
        "po_id": "PO-1042",
        "status": "created",
        "amount": a["amount"],
    },
    "carriers.quote": lambda a: {
        "carrier": a["carrier"],
        "quote_id": f"q-{a['carrier']}",
        "cost": {"oceanic": 1450.0, "rapidfreight": 1300.0}[a["carrier"]],
        "days": 4,
    },
    "carriers.book": lambda a: {"booking_id": "BK-7", "carrier": a["carrier"], "cost": a["cost"]},
}


class Resumer:
    """Answers what the resumed runs ask for, until they complete."""

    def __init__(self, engine: Engine, publisher: CollectingPublisher) -> None:
        self.engine, self.publisher = engine, publisher
        self.answered: set[uuid.UUID] = set()

    async def tool(self, call: Envelope[Any]) -> None:
        self.answered.add(call.payload.call_id)
        answer = TOOL_ANSWERS[call.payload.tool]
        result = answer(dict(call.payload.arguments)) if callable(answer) else answer
        completed = ToolCallCompleted(
            call_id=call.payload.call_id, tool=call.payload.tool, result=result, duration_ms=3
        )
        await self.engine.resume(call.follow(completed))
        await self.run_tools()

    async def run_tools(self) -> None:
        for event in list(self.publisher.events):
            payload = event.payload
            if isinstance(payload, ToolCallRequested) and payload.call_id not in self.answered:
                await self.tool(event)

    async def decide(self, review: Envelope[Any], decision: ReviewDecision, **kw: Any) -> None:
        """Decide as hitl does: by a reviewer holding the role the review needs."""
        reviewer = Principal(subject=kw["reviewer"], roles=(review.payload.required_role,))
        decided = ReviewDecided(
            review_id=review.payload.review_id, decision=decision, decided_by=reviewer, **kw
        )
        await self.engine.decide(review.follow(decided))
        await self.run_tools()

    def completed(self, workflow_id: str) -> WorkflowCompleted:
        [done] = [
            e.payload
            for e in self.publisher.events
            if isinstance(e.payload, WorkflowCompleted) and str(e.workflow_id) == workflow_id
        ]
        return done

    def calls(self, workflow_id: str, tool: str) -> list[ToolCallRequested]:
        return [
            e.payload
            for e in self.publisher.events
            if isinstance(e.payload, ToolCallRequested)
            and str(e.workflow_id) == workflow_id
            and e.payload.tool == tool
        ]


@pytest.fixture
async def resumer(tmp_path: Path) -> AsyncIterator[Resumer]:
    path = tmp_path / "checkpoints.sqlite3"
    shutil.copy(DATA / "format-0-checkpoints.sqlite3", path)
    async with open_sqlite_store(path) as (saver, outbox):
        publisher = CollectingPublisher(wire_check=True)
        engine = Engine(
            graphs=build_graphs(checkpointer=saver, gates=GatePolicy.load()),
            checkpointer=saver,
            publisher=publisher,
            outbox=outbox,
            reviewers=load_access_policy(),
            tool_timeout_s=20.0,
        )
        yield Resumer(engine, publisher)


def _waiting(name: str) -> tuple[str, Envelope[Any]]:
    run = RUNS[name]
    event = run["waiting_for"]
    topic = TOOL_CALLS if event["type"] == "tool.call.requested.v1" else REVIEWS_REQUESTED
    return run["workflow_id"], topic.adapter.validate_json(json.dumps(event))


async def test_a_run_paused_at_a_tool_call_finishes(resumer: Resumer) -> None:
    workflow_id, call = _waiting("refund-at-lookup")
    await resumer.tool(call)

    done = resumer.completed(workflow_id)
    assert done.outcome is Outcome.SUCCEEDED, done.error
    assert done.output["amount"] == 100.0
    assert done.output["approval"] == {"decision": "not_required"}
    [paid] = resumer.calls(workflow_id, "payments.refund")
    assert paid.idempotency_key == f"{workflow_id}:execute_refund"


async def test_a_run_paused_after_a_failed_call_takes_its_recovery_path(
    resumer: Resumer,
) -> None:
    workflow_id, call = _waiting("reroute-next-carrier")
    assert call.payload.arguments["carrier"] == "oceanic"
    await resumer.tool(call)

    done = resumer.completed(workflow_id)
    assert done.outcome is Outcome.SUCCEEDED, done.error
    assert (done.output["carrier"], done.output["cost"]) == ("rapidfreight", 1300.0)
    assert [c.arguments["carrier"] for c in resumer.calls(workflow_id, "carriers.book")] == [
        "rapidfreight"
    ]


async def test_a_run_paused_at_a_gate_is_approved_and_commits(resumer: Resumer) -> None:
    workflow_id, review = _waiting("procurement-at-gate")
    await resumer.decide(review, ReviewDecision.APPROVE, reviewer="maria", comment="ok")

    done = resumer.completed(workflow_id)
    assert done.outcome is Outcome.SUCCEEDED, done.error
    assert done.output["po_id"] == "PO-1042"
    assert done.output["approval"] == {
        "decision": "approve",
        "rule": "procurement.amount_over_threshold",
        "reviewer": "maria",
        "comment": "ok",
    }


async def test_an_escalated_review_is_decided_by_the_escalation_role(resumer: Resumer) -> None:
    workflow_id, review = _waiting("procurement-escalated")
    assert (review.payload.attempt, review.payload.required_role) == (1, "finance-director")
    await resumer.decide(review, ReviewDecision.REJECT, reviewer="dana", comment="no budget")

    done = resumer.completed(workflow_id)
    assert done.outcome is Outcome.REJECTED
    assert done.error == "rejected by dana: no budget"
    assert resumer.calls(workflow_id, "erp.create_purchase_order") == []


async def test_an_out_of_policy_refund_paid_only_after_an_in_policy_edit(
    resumer: Resumer,
) -> None:
    workflow_id, review = _waiting("refund-out-of-policy")
    edited = {**review.payload.proposed_action, "amount": 450.0}
    await resumer.decide(review, ReviewDecision.EDIT, edited_action=edited, reviewer="lee")

    done = resumer.completed(workflow_id)
    assert done.outcome is Outcome.SUCCEEDED, done.error
    assert done.output["amount"] == 450.0
    assert done.output["approval"] == {
        "decision": "edit",
        "rule": "refund.amount_out_of_policy",
        "reviewer": "lee",
    }


async def test_a_handover_is_answered_by_the_agent(resumer: Resumer) -> None:
    workflow_id, review = _waiting("triage-handover")
    answer = {**review.payload.proposed_action, "suggested_answer": "Billing will call you."}
    await resumer.decide(review, ReviewDecision.EDIT, edited_action=answer, reviewer="sam")

    done = resumer.completed(workflow_id)
    assert done.outcome is Outcome.SUCCEEDED, done.error
    assert (done.output["answer"], done.output["source"]) == ("Billing will call you.", "agent")


async def test_a_resumed_run_republishes_nothing_it_already_published(
    resumer: Resumer,
) -> None:
    workflow_id, call = _waiting("refund-at-lookup")
    # An answer to a call of this run that it does not wait for now (a late repeat, as
    # far as the engine can tell): nothing is asked again.
    repeat = call_id_for(uuid.UUID(workflow_id), "lookup_order_retry")
    await resumer.engine.resume(
        call.follow(
            ToolCallCompleted(call_id=repeat, tool="crm.get_order", result={}, duration_ms=1)
        )
    )
    assert resumer.publisher.events == []
    snapshot = await resumer.engine.state(uuid.UUID(workflow_id))
    assert snapshot is not None
    assert snapshot.values["workflow"] == "refund"


async def test_the_fixture_is_format_0_and_new_runs_write_the_current_format(
    resumer: Resumer,
) -> None:
    workflow_id, call = _waiting("refund-at-lookup")
    old = await resumer.engine.state(uuid.UUID(workflow_id))
    assert old is not None
    assert "format" not in old.values
    [pending] = old.interrupts
    assert pending.value["kind"] == "tool", "format 0 paused on a kind-tagged dict"

    routed = call.follow(
        RequestRouted(
            workflow="refund",
            confidence=0.9,
            reason="test",
            text="Refund $20 for order 4411",
            fields={"order_id": "4411", "amount": 20.0},
        )
    )
    fresh = routed.model_copy(update={"workflow_id": uuid.uuid4()})
    await resumer.engine.start(fresh)
    new = await resumer.engine.state(fresh.workflow_id)
    assert new is not None
    assert new.values["format"] == FORMAT_VERSION
    [asked] = new.interrupts
    assert asked.value["type"] == "tool.call.requested.v1"
    key = new.values["pause_key"]
    assert asked.value["call_id"] == str(call_id_for(fresh.workflow_id, "lookup_order", key))
