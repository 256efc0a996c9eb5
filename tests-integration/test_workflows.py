"""The four workflows on the real broker, with real processes and the sandbox backends:
happy paths, declared recovery paths, approval gates, and duplicates that change nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pactmesh_contracts.events import DeadLetter
from pactmesh_contracts.topics import DEAD_LETTERS, REVIEWS_DECIDED
from pactmesh_harness.mesh import Broker, Mesh, read_from_start, running_mesh, wait_for
from pactmesh_harness.workflow_client import (
    clear_faults,
    decide,
    entries_for,
    fault,
    finished,
    history_events,
    pending_review,
    run,
    submit,
    wait_status,
)
from pactmesh_workflows.gates import GatePolicy

EXPIRY_S = 3
# What a requester needs to start each workflow that routing picks from the text.
PROCUREMENT = ("workflow:procurement",)
REROUTE = ("workflow:supply-chain-reroute",)
REFUND = ("workflow:refund",)
FAST_EXPIRY = "supply-chain.cost_increase_over_threshold"
"""The gate whose reviews expire in ``EXPIRY_S``; every other waits 600 s."""


def _toml(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)  # strings and numbers: JSON writes them as TOML reads them


def gate_policy() -> str:
    """The packaged gate policy (every declared gate), with the timeouts above."""
    lines: list[str] = []
    for rule, settings in GatePolicy.load().gates.items():
        fields = settings.model_dump(mode="json", exclude_none=True)
        fields["timeout_s"] = EXPIRY_S if rule == FAST_EXPIRY else 600
        lines += [f'[gates."{rule}"]', *(f"{k} = {_toml(v)}" for k, v in fields.items()), ""]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def mesh(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh with a gate policy whose reroute gate expires in seconds."""
    data_dir = tmp_path_factory.mktemp("workflows")
    policy = data_dir / "gates.toml"
    policy.write_text(gate_policy())
    env = {
        "PACTMESH_ORCHESTRATOR_GATE_POLICY": str(policy),
        "PACTMESH_ORCHESTRATOR_TOOL_TIMEOUT_S": "4",
        "PACTMESH_HITL_EXPIRY_CHECK_S": "0.5",
    }
    with running_mesh(broker, data_dir, env=env) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_faults(mesh: Mesh) -> Iterator[None]:
    clear_faults(mesh)
    yield
    clear_faults(mesh)


def _quote(mesh: Mesh, carrier: str, shipment: str) -> float:
    response = httpx.post(
        f"{mesh.sandbox_url}/carriers/{carrier}/quotes", json={"shipment_id": shipment}, timeout=10
    )
    assert response.status_code == 200, response.text
    return float(response.json()["cost"])


def _shipment(mesh: Mesh, *, cheap: bool) -> str:
    """A shipment whose best quote from the first two carriers is under (or well over)
    the 500 increase the gate allows over the 1000 baseline."""
    for n in range(1, 300):
        shipment = f"SH-{n}"
        best = min(_quote(mesh, c, shipment) for c in ("northwind", "oceanic"))
        if (cheap and best <= 1400) or (not cheap and best >= 1700):
            return shipment
    raise AssertionError("no suitable shipment id in SH-1..SH-299")


# -- happy paths --------------------------------------------------------------------------


def test_support_triage_answers_from_the_knowledge_base(mesh: Mesh) -> None:
    rid = submit(mesh, "How do I reset my password?")
    values = finished(mesh, rid)
    assert values["workflow"] == "support-triage"
    assert values["outcome"] == "succeeded"
    assert values["output"]["source"] == "knowledge_base"
    assert values["output"]["article_id"] == "kb-001"


def test_procurement_under_the_threshold_commits_one_order(mesh: Mesh) -> None:
    rid = submit(
        mesh,
        "Please raise a purchase order for 5 monitors from Acme, $2,000 in total",
        scopes=PROCUREMENT,
    )
    values = finished(mesh, rid)
    assert values["outcome"] == "succeeded", values.get("error")
    assert values["approval"]["decision"] == "not_required"
    orders = entries_for(mesh, rid)
    assert [(e["kind"], e["idempotency_key"]) for e in orders] == [
        ("purchase_order", f"{rid}:commit_order")
    ]
    assert values["output"]["po_id"] == orders[0]["id"]


def test_reroute_books_the_cheapest_alternative(mesh: Mesh) -> None:
    shipment = _shipment(mesh, cheap=True)
    rid = submit(mesh, f"The port is closed, please reroute shipment {shipment}", scopes=REROUTE)
    values = finished(mesh, rid)
    assert values["outcome"] == "succeeded", values.get("error")
    quotes = values["output"]["quotes"]
    assert len(quotes) == 2
    assert values["output"]["cost"] == min(q["cost"] for q in quotes)
    assert [e["kind"] for e in entries_for(mesh, rid)] == ["booking"]


def test_refund_within_the_automatic_limit_is_paid_once(mesh: Mesh) -> None:
    rid = submit(
        mesh,
        "I want a refund of $50 for order 4411, the headphones arrived broken",
        scopes=REFUND,
    )
    values = finished(mesh, rid)
    assert values["outcome"] == "succeeded", values.get("error")
    assert values["output"]["amount"] == 50
    assert [e["kind"] for e in entries_for(mesh, rid)] == ["refund"]


# -- approval gates ---------------------------------------------------------------------


def _big_order(mesh: Mesh) -> tuple[Any, dict[str, Any]]:
    rid = submit(
        mesh,
        "Please raise a purchase order for 25 laptops from Acme, about $30,000",
        scopes=PROCUREMENT,
    )
    wait_status(mesh, rid, "waiting_for_review")
    review = pending_review(mesh, rid)
    assert review["rule"] == "procurement.amount_over_threshold"
    assert review["required_role"] == "procurement-manager"
    assert review["proposed_action"]["amount"] == 30_000
    return rid, review


def test_gate_approve_commits_after_approval_and_only_the_named_role_may_decide(mesh: Mesh) -> None:
    rid, review = _big_order(mesh)
    assert entries_for(mesh, rid) == [], "nothing is committed before approval"
    assert decide(mesh, review["review_id"], "approve", roles=["support-agent"]).status_code == 403
    assert (
        decide(mesh, review["review_id"], "approve", roles=["procurement-manager"]).status_code
        == 200
    )
    assert (
        decide(mesh, review["review_id"], "reject", roles=["procurement-manager"]).status_code
        == 409
    )
    values = finished(mesh, rid)
    assert values["outcome"] == "succeeded"
    assert values["approval"]["reviewer"] == "alice@example.com"
    assert len(entries_for(mesh, rid)) == 1


def test_gate_reject_never_commits(mesh: Mesh) -> None:
    rid, review = _big_order(mesh)
    response = decide(
        mesh, review["review_id"], "reject", roles=["procurement-manager"], comment="over budget"
    )
    assert response.status_code == 200
    values = finished(mesh, rid)
    assert values["outcome"] == "rejected"
    assert "over budget" in values["error"]
    assert entries_for(mesh, rid) == []


def test_gate_edit_is_validated_and_the_edited_order_is_committed(mesh: Mesh) -> None:
    rid, review = _big_order(mesh)
    wrong = {**review["proposed_action"], "amount": 12_000.0}  # no longer the total of its lines
    refused = decide(
        mesh, review["review_id"], "edit", roles=["procurement-manager"], edited_action=wrong
    )
    assert refused.status_code == 422
    assert any("edited_action" in e["loc"] for e in refused.json()["detail"])
    edited = {
        **review["proposed_action"],
        "items": [{"description": "laptops", "quantity": 10, "unit_price": 1200.0}],
        "amount": 12_000.0,
    }
    accepted = decide(
        mesh, review["review_id"], "edit", roles=["procurement-manager"], edited_action=edited
    )
    assert accepted.status_code == 200, accepted.text
    values = finished(mesh, rid)
    assert values["outcome"] == "succeeded"
    (order,) = entries_for(mesh, rid)
    assert order["body"]["amount"] == 12_000.0
    assert order["body"]["items"][0]["quantity"] == 10


def test_gate_expiry_rejects_as_the_policy_says(mesh: Mesh) -> None:
    shipment = _shipment(mesh, cheap=False)
    rid = submit(mesh, f"Disruption at the port: reroute shipment {shipment}", scopes=REROUTE)
    review = pending_review(mesh, rid)
    assert review["rule"] == "supply-chain.cost_increase_over_threshold"
    values = finished(mesh, rid, timeout=EXPIRY_S + 30)
    assert values["outcome"] == "rejected"
    assert "expired" in values["error"]
    assert entries_for(mesh, rid) == []


# -- recovery paths -----------------------------------------------------------------------


def test_erp_failing_after_commit_is_retried_without_a_second_order(mesh: Mesh) -> None:
    fault(mesh, "erp", fail_after_commit_next=1)
    rid = submit(
        mesh,
        "Please raise a purchase order for 3 desks from Acme, $900 in total",
        scopes=PROCUREMENT,
    )
    values = finished(mesh, rid)
    assert values["outcome"] == "succeeded", values.get("error")
    assert len(entries_for(mesh, rid)) == 1, "the retry replayed the stored answer"


def test_erp_5xx_then_success_recovers(mesh: Mesh) -> None:
    fault(mesh, "erp", fail_next=2)
    rid = submit(
        mesh,
        "Please raise a purchase order for 4 chairs from Acme, $800 in total",
        scopes=PROCUREMENT,
    )
    values = finished(mesh, rid)
    assert values["outcome"] == "succeeded", values.get("error")
    assert len(entries_for(mesh, rid)) == 1


def test_primary_carrier_down_quotes_from_the_next(mesh: Mesh) -> None:
    shipment = _shipment(mesh, cheap=True)
    fault(mesh, "carriers.northwind", error_rate=1.0)
    rid = submit(
        mesh,
        f"Shipment {shipment} is stuck because of a port closure, find another route",
        scopes=REROUTE,
    )
    values = run(mesh, wait_status(mesh, rid, "delivered") and rid)["values"]
    assert ("quote_northwind", "tool_failed") in history_events(values)
    carriers = {q["carrier"] for q in values["output"].get("quotes", [])}
    assert carriers == {"oceanic", "rapidfreight"}


def test_knowledge_base_timeout_hands_over_to_a_person(mesh: Mesh) -> None:
    fault(mesh, "kb", timeout_rate=1.0)
    rid = submit(mesh, "How do I change the delivery address?", workflow="support-triage")
    review = pending_review(mesh, rid, timeout=60)
    events = history_events(run(mesh, rid)["values"])
    assert ("search_kb", "tool_failed") in events
    assert ("search_kb_retry", "tool_failed") in events
    assert review["rule"] == "support.human_triage"
    answer = {**review["proposed_action"], "suggested_answer": "Orders > Details > Address."}
    assert (
        decide(
            mesh, review["review_id"], "edit", roles=["support-agent"], edited_action=answer
        ).status_code
        == 200
    )
    values = finished(mesh, rid)
    assert values["output"] == {
        "answer": "Orders > Details > Address.",
        "source": "agent",
        "article_id": None,
        "reply": None,
        "drafted_by": None,
        "similarity": None,
    }


# -- duplicates ---------------------------------------------------------------------------


def test_a_decision_delivered_twice_changes_nothing(mesh: Mesh) -> None:
    """The genuine decision, exactly as hitl published it, delivered twice more: the run
    does not move, nothing is paid twice, and nothing is dead-lettered (a redelivery is
    not a forgery)."""
    rid, review = _big_order(mesh)
    assert (
        decide(mesh, review["review_id"], "approve", roles=["procurement-manager"]).status_code
        == 200
    )
    before = finished(mesh, rid)
    decided = REVIEWS_DECIDED.qualified(mesh.prefix)
    genuine: list[Any] = []

    def keep(record: Any) -> None:
        if json.loads(record.value)["payload"]["review_id"] == review["review_id"]:
            genuine.append(record)

    asyncio.run(
        read_from_start(mesh, [decided], on_record=keep, done=lambda: bool(genuine), deadline_s=30)
    )
    [original] = genuine

    async def replay() -> None:
        producer = AIOKafkaProducer(**mesh.kafka_options(), acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for _ in range(2):
                await producer.send_and_wait(
                    decided, original.value, key=original.key, headers=list(original.headers)
                )
        finally:
            await producer.stop()

    asyncio.run(replay())
    group = f"{mesh.prefix}orchestrator.{REVIEWS_DECIDED.name}"
    wait_for(
        lambda: asyncio.run(_consumed(mesh, decided, group)),
        timeout=30,
        interval=0.3,
        what="the orchestrator to consume the replayed decisions",
    )
    after = run(mesh, rid)
    assert after["values"]["history"] == before["history"]
    assert len(entries_for(mesh, rid)) == 1
    letters: list[DeadLetter] = []
    asyncio.run(
        read_from_start(
            mesh,
            [DEAD_LETTERS.qualified(mesh.prefix)],
            on_record=lambda r: letters.append(DeadLetter.model_validate_json(r.value)),
            done=lambda: False,
            deadline_s=3,
        )
    )
    assert [d for d in letters if d.source_topic == decided] == []


async def _consumed(mesh: Mesh, topic: str, group: str) -> bool:
    """Whether ``group`` has committed every message of ``topic`` (handled them all)."""
    admin = AIOKafkaAdminClient(**mesh.kafka_options())
    consumer = AIOKafkaConsumer(**mesh.kafka_options())
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            await consumer.topics()
            partitions = [
                TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
            ]
        ends = await consumer.end_offsets(partitions)
        return all(
            (committed.get(tp).offset if committed.get(tp) else 0) >= end
            for tp, end in ends.items()
        )
    finally:
        await consumer.stop()
        await admin.close()


def test_an_out_of_policy_refund_is_never_paid(mesh: Mesh) -> None:
    rid = submit(
        mesh,
        "I want a refund of $5,000 for order 4411, the headphones arrived broken",
        scopes=REFUND,
    )
    review = pending_review(mesh, rid)
    assert review["rule"] == "refund.amount_out_of_policy"
    assert "exceeds the order total" in review["summary"]
    assert decide(mesh, review["review_id"], "approve", roles=["support-lead"]).status_code == 200
    values = finished(mesh, rid)
    assert values["outcome"] == "rejected"
    assert "refund not executed" in values["error"]
    assert entries_for(mesh, rid) == [], "an out-of-policy amount is never executed"
