"""The access policy on a real broker: a ToolCallRequested forged straight onto Kafka for
a principal without the scope is refused by the tools service, answered ``forbidden``
with the reason, audited, and never paid; so is the same call whose principal grants
itself the scope (no request the mesh accepted vouches for it). A request routed to a
workflow its principal may not start ends rejected, and audited."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    Outcome,
    RequestSubmitted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
)
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.topics import (
    AUDIT,
    REQUESTS_INBOUND,
    TOOL_CALLS,
    TOOL_RESULTS,
    Topic,
    result_topic,
)
from pactmesh_harness.mesh import Mesh, read_from_start

REFUND = {"order_id": "4411", "amount": 25.0, "currency": "USD", "reason": "arrived broken"}
REQUESTER = Principal(subject="mallory", roles=("requester",))
"""May start support-triage only: not granted ``payments.refund``."""
REFUNDER = Principal(subject="alice", roles=("requester",), scopes=("workflow:refund",))

Match = Callable[[Envelope[Any]], bool]


async def _publish(mesh: Mesh, topic: Topic, event: Envelope[Any]) -> None:
    producer = AIOKafkaProducer(**mesh.kafka_options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        headers = mesh.inbound_headers(event) if topic is REQUESTS_INBOUND else None
        await producer.send_and_wait(
            topic.qualified(mesh.prefix),
            event.model_dump_json().encode(),
            key=event.key,
            headers=headers,
        )
    finally:
        await producer.stop()


async def _first(
    mesh: Mesh, wanted: dict[Topic, Match], *, deadline_s: float = 30.0
) -> dict[Topic, Envelope[Any]]:
    """The first event on each topic of ``wanted`` that its predicate matches (read from
    the start of the topics, in a consumer group of its own); fails at the deadline."""
    by_name = {t.qualified(mesh.prefix): t for t in wanted}
    found: dict[Topic, Envelope[Any]] = {}

    def match(record: Any) -> None:
        topic = by_name[record.topic]
        event = topic.adapter.validate_json(record.value)
        if topic not in found and wanted[topic](event):
            found[topic] = event

    await read_from_start(
        mesh,
        list(by_name),
        on_record=match,
        done=lambda: len(found) == len(wanted),
        deadline_s=deadline_s,
    )
    missing = [t.name for t in wanted if t not in found]
    assert not missing, f"nothing matching on {missing} within {deadline_s}s"
    return found


async def _ledger(mesh: Mesh, key: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=mesh.sandbox_url, timeout=10) as http:
        response = await http.get("/ledger", params={"idempotency_key": key})
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return entries


def _refund_call(principal: Principal, key: str) -> Envelope[Any]:
    return new_event(
        ToolCallRequested(
            call_id=uuid.uuid4(),
            tool="payments.refund",
            arguments=REFUND,
            idempotency_key=key,
            workflow="refund",
        ),
        workflow_id=uuid7(),
        tenant="acme",
        principal=principal,
    )


def _answers(call: Envelope[Any]) -> Match:
    return lambda e: bool(e.payload.call_id == call.payload.call_id)


@pytest.mark.timeout(180)
async def test_a_forged_refund_is_refused_audited_and_never_paid(mesh: Mesh) -> None:
    key = f"forged-{uuid.uuid4().hex[:8]}:refund"
    forged = _refund_call(REQUESTER, key)

    await _publish(mesh, TOOL_CALLS, forged)

    found = await _first(
        mesh,
        {
            TOOL_RESULTS: _answers(forged),
            AUDIT: lambda e: e.payload.detail.get("call_id") == str(forged.payload.call_id),
        },
    )
    answer, audit = found[TOOL_RESULTS], found[AUDIT]
    assert isinstance(answer.payload, ToolCallFailed)
    assert answer.payload.error_code is ToolErrorCode.FORBIDDEN
    assert answer.payload.retryable is False
    assert "'mallory'" in answer.payload.message
    assert "not granted tool 'payments.refund'" in answer.payload.message
    assert (audit.payload.service, audit.payload.action) == ("tools", "tool.call.refused")
    assert audit.payload.detail["principal"] == {
        "subject": "mallory",
        "roles": ["requester"],
        "scopes": [],
    }
    assert audit.payload.detail["workflow"] == "refund"
    assert audit.payload.detail["reason"] in answer.payload.message
    assert await _ledger(mesh, key) == []

    # The same call whose principal grants itself the scope passes the policy, but no
    # request the mesh accepted was made by that principal: refused, audited, not paid.
    self_granted = _refund_call(REFUNDER, key)
    await _publish(mesh, TOOL_CALLS, self_granted)
    found = await _first(
        mesh,
        {
            TOOL_RESULTS: _answers(self_granted),
            AUDIT: lambda e: e.payload.detail.get("call_id") == str(self_granted.payload.call_id),
        },
    )
    assert isinstance(found[TOOL_RESULTS].payload, ToolCallFailed)
    assert "the mesh accepted no request" in found[TOOL_RESULTS].payload.message
    assert found[AUDIT].payload.detail["principal"]["scopes"] == ["workflow:refund"]
    assert await _ledger(mesh, key) == []


@pytest.mark.timeout(180)
async def test_a_refund_request_from_a_principal_without_the_scope_ends_rejected(
    mesh: Mesh,
) -> None:
    request = new_event(
        RequestSubmitted(
            text="I want a refund for order 4411, the headphones arrived broken",
            metadata={"ticket": "T-403"},
        ),
        workflow_id=uuid7(),
        tenant="acme",
        principal=REQUESTER,
    )

    await _publish(mesh, REQUESTS_INBOUND, request)

    results = result_topic("refund")
    mine: Match = lambda e: e.workflow_id == request.workflow_id  # noqa: E731
    refusal: Match = lambda e: mine(e) and e.payload.type == "audit.recorded.v1"  # noqa: E731
    found = await _first(mesh, {results: mine, AUDIT: refusal})
    result, audit = found[results], found[AUDIT]
    assert result.payload.outcome is Outcome.REJECTED
    assert result.payload.error.startswith("refused by the access policy: ")
    assert "may not start workflow 'refund'" in result.payload.error
    assert result.payload.metadata == {"ticket": "T-403"}
    assert (audit.payload.service, audit.payload.action) == ("routing", "workflow.start.refused")
    # the workflow never started: the orchestrator has no run of it
    async with httpx.AsyncClient(base_url=mesh.url("orchestrator"), timeout=10) as http:
        run = await http.get(
            f"/v1/workflows/runs/{request.workflow_id}",
            headers=mesh.bearer(tenant=request.tenant, subject=REQUESTER.subject),
        )
    assert run.status_code == 404, run.text
