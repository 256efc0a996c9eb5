"""Observability on the real mesh: a refund that went through an approval, told by its
timeline (API, CLI rendering, the reviewer's view), its traces (GenAI spans, the link
across the review) and every service's Prometheus metrics, which exist and move."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pactmesh_harness.mesh import SERVICES, Broker, Mesh, running_mesh, wait_for
from pactmesh_harness.workflow_client import (
    decide,
    finished,
    pending_review,
    requester,
    reviewer,
    submit,
)
from pactmesh_kit.metrics import FAMILIES
from pactmesh_kit.timeline_cli import render_timeline, render_trace, request_spans

PRICES = {"models": {"pactmesh-offline:default": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}}
REFUND_TEXT = "I want a refund of $500 for order 2002, the monitor arrived broken"
EXPORTED_BY = {
    "intake": FAMILIES["every service"],
    "routing": FAMILIES["every service"] + FAMILIES["routing and orchestrator"],
    "orchestrator": FAMILIES["every service"]
    + FAMILIES["routing and orchestrator"]
    + FAMILIES["orchestrator"],
    "tools": FAMILIES["every service"] + FAMILIES["tools"],
    "hitl": FAMILIES["every service"] + FAMILIES["hitl"],
    "delivery": FAMILIES["every service"],
}


@pytest.fixture(scope="module")
def mesh(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh with a price on the offline model, so spend is counted too."""
    env = {"PACTMESH_MODEL_PRICES": json.dumps(PRICES)}
    with running_mesh(broker, tmp_path_factory.mktemp("observability"), env=env) as running:
        yield running


def _samples(text: str) -> dict[str, float]:
    """Every sample of a scrape, by its line's name and labels, summed per family name."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name = re.split(r"[{ ]", line, maxsplit=1)[0]
        totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def _scrape(mesh: Mesh) -> dict[str, dict[str, float]]:
    return {s: _samples(httpx.get(f"{mesh.url(s)}/metrics", timeout=10).text) for s in SERVICES}


def _timeline(mesh: Mesh, request_id: uuid.UUID, headers: dict[str, str]) -> dict[str, Any]:
    answer = httpx.get(
        f"{mesh.url('intake')}/v1/requests/{request_id}/timeline", headers=headers, timeout=10
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_a_refund_through_an_approval_is_one_story(mesh: Mesh) -> None:
    before = _scrape(mesh)
    rid = submit(mesh, REFUND_TEXT, scopes=("workflow:refund",))
    review = pending_review(mesh, rid)
    lead = reviewer(mesh, ("support-lead",), subject="lena@example.com")

    # The reviewer sees what the agent did before deciding.
    seen = httpx.get(
        f"{mesh.url('hitl')}/v1/reviews/{review['review_id']}/timeline", headers=lead, timeout=10
    ).json()
    assert [e["type"] for e in seen["entries"]][:2] == [
        "audit.request.accepted.v1",
        "audit.model.called.v1",
    ]
    answer = decide(
        mesh,
        review["review_id"],
        "approve",
        roles=["support-lead"],
        comment="loyal customer",
        reviewer_id="lena@example.com",
    )
    assert answer.status_code == 200, answer.text
    assert finished(mesh, rid)["outcome"] == "succeeded"

    def complete() -> dict[str, Any] | None:
        found = _timeline(mesh, rid, requester(mesh, scopes=("workflow:refund",)))
        done = found["entries"][-1]["type"] == "audit.result.delivered.v1"
        return found if done else None

    timeline = wait_for(complete, timeout=30, what="the timeline to reach delivery")
    print("\n" + render_timeline(timeline))
    kinds = [e["type"].removeprefix("audit.").rsplit(".v", 1)[0] for e in timeline["entries"]]
    assert kinds == [
        "request.accepted",
        "model.called",
        "request.routed",
        "tool.called",
        "gate.fired",
        "review.decided",
        "tool.called",
        "workflow.completed",
        "result.delivered",
    ]
    entries = {e["type"]: e["detail"] for e in timeline["entries"]}
    called = entries["audit.model.called.v1"]
    assert called["prompt"]["name"] == "routing.decision"
    assert called["validation"] == "valid"
    assert called["usage"]["cost"] > 0
    assert entries["audit.request.routed.v1"]["workflow"] == "refund"
    gate = entries["audit.gate.fired.v1"]
    assert gate["rule"] == "refund.amount_over_auto_limit"
    decided = entries["audit.review.decided.v1"]
    assert (decided["reviewer"], decided["comment"]) == ("lena@example.com", "loyal customer")
    tools = [e["detail"] for e in timeline["entries"] if e["type"] == "audit.tool.called.v1"]
    assert [(t["tool"], t["ok"]) for t in tools] == [
        ("crm.get_order", True),
        ("payments.refund", True),
    ]
    assert tools[1]["arguments"]["amount"] == 500.0
    _assert_traces(mesh, rid)
    # A drafted answer: the orchestrator's own model call (the refund made none there).
    finished(mesh, submit(mesh, "How do I reset my password?"))
    _assert_metrics_moved(mesh, before)


def _assert_traces(mesh: Mesh, rid: uuid.UUID) -> None:
    def spans() -> list[dict[str, Any]] | None:
        found = request_spans(mesh.spans(), str(rid))
        names = {s["name"] for s in found}
        wanted = {"chat default", "execute_tool crm.get_order", "invoke_workflow refund"}
        return found if wanted <= names else None

    found = wait_for(spans, timeout=30, what="the request's spans in the trace files")
    print("\n" + render_trace(found))
    chat = next(s for s in found if s["name"] == "chat default")
    assert chat["attributes"]["gen_ai.operation.name"] == "chat"
    assert chat["attributes"]["gen_ai.provider.name"] == "pactmesh-offline"
    assert chat["attributes"]["gen_ai.usage.input_tokens"] > 0
    tool = next(s for s in found if s["name"] == "execute_tool payments.refund")
    assert tool["attributes"]["gen_ai.tool.call.id"]
    segments = [s for s in found if s["name"] == "invoke_workflow refund"]
    assert {s["attributes"]["gen_ai.agent.name"] for s in segments} == {"refund"}
    assert any(s["links"] for s in segments), "the resumed segment links to the pause"


def _assert_metrics_moved(mesh: Mesh, before: dict[str, dict[str, float]]) -> None:
    def moved() -> dict[str, dict[str, float]] | None:
        after = _scrape(mesh)
        handled = "messaging_process_duration_seconds_count"
        ok = all(after[s].get(handled, 0) > before[s].get(handled, 0) for s in SERVICES)
        return after if ok else None

    after = wait_for(moved, timeout=30, what="every service's handler counts to move")
    for service, families in EXPORTED_BY.items():
        names = set(after[service])
        for family in families:
            if family == "pactmesh_dead_letters_total":
                continue  # only once something was dead-lettered: test_dead_letters...
            assert any(n.startswith(family) for n in names), f"{service} lacks {family}"
    assert after["routing"]["gen_ai_client_operation_duration_seconds_count"] > before[
        "routing"
    ].get("gen_ai_client_operation_duration_seconds_count", 0)
    assert after["routing"]["pactmesh_gen_ai_cost_total"] > 0
    assert after["tools"]["gen_ai_execute_tool_duration_seconds_count"] >= 2
    assert after["orchestrator"]["pactmesh_workflow_transitions_total"] >= 4


def test_a_dead_letter_is_counted_by_reason(mesh: Mesh) -> None:
    from aiokafka import AIOKafkaProducer
    from pactmesh_contracts.topics import REQUESTS_INBOUND

    async def produce() -> None:
        producer = AIOKafkaProducer(**mesh.kafka_options())
        await producer.start()
        try:
            await producer.send_and_wait(REQUESTS_INBOUND.qualified(mesh.prefix), b"not json")
        finally:
            await producer.stop()

    import asyncio

    asyncio.run(produce())

    def counted() -> float | None:
        text = httpx.get(f"{mesh.url('intake')}/metrics", timeout=10).text
        lines = [line for line in text.splitlines() if line.startswith("pactmesh_dead_letters")]
        undecodable = [line for line in lines if 'reason="undecodable"' in line]
        return float(undecodable[0].rsplit(" ", 1)[1]) if undecodable else None

    assert wait_for(counted, timeout=30, what="the dead letter in intake's metrics") >= 1
