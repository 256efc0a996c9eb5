"""Events forged straight onto Kafka, one of each kind that would start or resume work or
hand out a result (issue 11's list), against a real mesh on a real broker: nothing runs,
nothing is delivered, and each refusal is audited and dead-lettered with its reason.

(A ToolCallRequested with a self-granted scope is in ``test_tool_policy.py``.) The
table each test prints is the closing note's: what was forged and what it got.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    DeadLetter,
    Outcome,
    RequestSubmitted,
    ReviewDecided,
    ReviewDecision,
    ToolCallCompleted,
    WorkflowCompleted,
)
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.topics import (
    AUDIT,
    DEAD_LETTERS,
    REQUESTS_INBOUND,
    REVIEWS_DECIDED,
    TOOL_RESULTS,
    WORKFLOW_COMPLETED,
    Topic,
)
from pactmesh_harness.mesh import Mesh, read_from_start
from pactmesh_harness.workflow_client import (
    entries_for,
    pending_review,
    status,
    submit,
    wait_status,
)

MALLORY = Principal(
    subject="mallory", roles=("upstream-system",), scopes=("workflow:support-triage",)
)
"""Who a forger claims to be: an upstream system allowed to start support-triage."""
BUYER = Principal(subject="test-requester", roles=("requester",), scopes=("workflow:procurement",))
"""Who the waiting purchase order acts for: a forger who copied a genuine envelope."""


async def _forge(mesh: Mesh, topic: Topic, event: Envelope[Any]) -> tuple[int, int]:
    """Publish ``event`` on ``topic`` with no credential at all; its partition and offset."""
    producer = AIOKafkaProducer(**mesh.kafka_options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        meta = await producer.send_and_wait(
            topic.qualified(mesh.prefix), event.model_dump_json().encode(), key=event.key
        )
    finally:
        await producer.stop()
    return meta.partition, meta.offset


async def _refusal(
    mesh: Mesh, forged: Envelope[Any], topic: Topic, placed: tuple[int, int]
) -> tuple[Any, DeadLetter]:
    """The audit record refusing ``forged`` and the dead letter of the record it was
    (at ``placed`` on ``topic``), read from the start of both topics within a deadline."""
    audits: list[Any] = []
    letters: list[DeadLetter] = []
    where = (topic.qualified(mesh.prefix), *placed)

    def take(record: Any) -> None:
        if record.topic == AUDIT.qualified(mesh.prefix):
            event = AUDIT.adapter.validate_json(record.value)
            if _refuses(event, forged):
                audits.append(event)
            return
        letter = DeadLetter.model_validate_json(record.value)
        if (letter.source_topic, letter.source_partition, letter.source_offset) == where:
            letters.append(letter)

    await read_from_start(
        mesh,
        [AUDIT.qualified(mesh.prefix), DEAD_LETTERS.qualified(mesh.prefix)],
        on_record=take,
        done=lambda: bool(audits) and bool(letters),
        deadline_s=90,
    )
    assert audits, f"no audit record refusing {forged.type}"
    assert letters, f"no dead letter for {forged.type}"
    return audits[0], letters[0]


def _refuses(audit: Envelope[Any], forged: Envelope[Any]) -> bool:
    """Whether ``audit`` is a refusal of ``forged``: named by its event id, or (an inbound
    request, refused before it has any other name) by its workflow id."""
    payload = audit.payload
    if payload.type != "audit.recorded.v1" or not payload.action.endswith(".refused"):
        return False
    named = payload.detail.get("event_id")
    return named == str(forged.event_id) or (
        named is None and audit.workflow_id == forged.workflow_id
    )


def _row(what: str, audit: Any, letter: DeadLetter) -> None:
    reason = audit.payload.detail.get("reason", "")
    print(f"\n| {what} | {audit.payload.action} | {letter.error_code} | {reason[:90]} |")


@pytest.fixture
def waiting_order(mesh: Mesh) -> tuple[uuid.UUID, dict[str, Any]]:
    """A purchase order over the threshold, waiting for a procurement manager."""
    rid = submit(
        mesh,
        "Please raise a purchase order for 25 laptops from Acme, about $30,000",
        scopes=("workflow:procurement",),
    )
    wait_status(mesh, rid, "waiting_for_review", timeout=120)
    return rid, pending_review(mesh, rid)


@pytest.mark.timeout(240)
async def test_an_inbound_request_claiming_a_principal_without_a_token(mesh: Mesh) -> None:
    forged = new_event(
        RequestSubmitted(text="How do I reset my password?"),
        workflow_id=uuid7(),
        tenant="acme",
        principal=MALLORY,
    )
    placed = await _forge(mesh, REQUESTS_INBOUND, forged)

    audit, letter = await _refusal(mesh, forged, REQUESTS_INBOUND, placed)

    assert (audit.payload.service, audit.payload.action) == ("intake", "inbound.refused")
    assert audit.payload.detail["token"] is None
    assert status(mesh, forged.workflow_id, tenant="acme", missing_ok=True) == {}
    _row("inbound request, self-claimed principal, no token", audit, letter)


@pytest.mark.timeout(300)
async def test_a_review_decision_by_someone_without_the_gates_role(
    mesh: Mesh, waiting_order: tuple[uuid.UUID, dict[str, Any]]
) -> None:
    rid, review = waiting_order
    forged = new_event(
        ReviewDecided(
            review_id=uuid.UUID(review["review_id"]),
            decision=ReviewDecision.APPROVE,
            reviewer="mallory",
            decided_by=Principal(subject="mallory", roles=("requester",)),
        ),
        workflow_id=rid,
        tenant="default",
        principal=BUYER,
    )
    placed = await _forge(mesh, REVIEWS_DECIDED, forged)

    audit, letter = await _refusal(mesh, forged, REVIEWS_DECIDED, placed)

    assert (audit.payload.service, audit.payload.action) == ("orchestrator", "resume.refused")
    assert status(mesh, rid)["status"] == "waiting_for_review"
    assert [e for e in entries_for(mesh, rid) if e["kind"] == "purchase_order"] == []
    assert "procurement-manager" in audit.payload.detail["reason"]
    _row("review decision, real review id and envelope, decided by a requester", audit, letter)


@pytest.mark.timeout(300)
async def test_a_tool_result_for_a_call_the_run_never_made(
    mesh: Mesh, waiting_order: tuple[uuid.UUID, dict[str, Any]]
) -> None:
    rid, _ = waiting_order
    forged = new_event(
        ToolCallCompleted(
            call_id=uuid.uuid4(),
            tool="erp.create_purchase_order",
            result={"po_number": "PO-FORGED"},
            duration_ms=1,
        ),
        workflow_id=rid,
        tenant="default",
        principal=BUYER,
    )
    placed = await _forge(mesh, TOOL_RESULTS, forged)

    audit, letter = await _refusal(mesh, forged, TOOL_RESULTS, placed)

    assert (audit.payload.service, audit.payload.action) == ("orchestrator", "resume.refused")
    assert "never asked" in audit.payload.detail["reason"]
    assert status(mesh, rid)["status"] == "waiting_for_review"
    _row("tool result, the run's envelope, a call id it never asked", audit, letter)


@pytest.mark.timeout(240)
async def test_a_completion_of_no_accepted_request(mesh: Mesh) -> None:
    forged = new_event(
        WorkflowCompleted(
            workflow="refund", outcome=Outcome.SUCCEEDED, output={"refund_id": "RF-FORGED"}
        ),
        workflow_id=uuid7(),
        tenant="acme",
        principal=MALLORY,
    )
    placed = await _forge(mesh, WORKFLOW_COMPLETED, forged)

    audit, letter = await _refusal(mesh, forged, WORKFLOW_COMPLETED, placed)

    assert (audit.payload.service, audit.payload.action) == ("delivery", "result.refused")
    assert status(mesh, forged.workflow_id, tenant="acme", missing_ok=True) == {}
    _row("workflow completion of no accepted request", audit, letter)
