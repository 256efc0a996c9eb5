"""Intake's edge on a running mesh: idempotent submission over HTTP and over Kafka ends in
exactly one result, a tenant over its rate limit is told when to come back, tenants do
not see each other's requests, and an event stream's last event is the result.

The mesh runs with a submit limit of 3 a minute per tenant, so every test submits for a
tenant of its own and at most three times (a refused submission counts too).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import DeadLetter, RequestSubmitted
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.topics import DEAD_LETTERS, REQUESTS_INBOUND
from pactmesh_harness.mesh import Broker, Mesh, read_from_start, running_mesh
from pactmesh_harness.workflow_client import events as sse_events
from pactmesh_harness.workflow_client import finished
from pactmesh_workflows.registry import registry

SUBMITS_PER_MINUTE = 3
QUESTION = "How do I reset my password?"
UPSTREAM = Principal(
    subject="system:crm", roles=("upstream-system",), scopes=("workflow:support-triage",)
)


@pytest.fixture(scope="module")
def mesh(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    env = {"PACTMESH_INTAKE_SUBMIT_RATE_LIMIT": f"{SUBMITS_PER_MINUTE}/minute"}
    with running_mesh(broker, tmp_path_factory.mktemp("intake-edges"), env=env) as m:
        yield m


def _post(
    mesh: Mesh, tenant: str, body: dict[str, Any], *, key: str | None = None
) -> httpx.Response:
    headers = mesh.bearer(tenant=tenant)
    if key is not None:
        headers["Idempotency-Key"] = key
    return httpx.post(f"{mesh.url('intake')}/v1/requests", json=body, headers=headers, timeout=10)


async def _results(mesh: Mesh, wanted: set[uuid.UUID], deadline_s: float) -> list[uuid.UUID]:
    """Every result for ``wanted`` on the result topics, read as a downstream consumer
    until each has one, then for 3 s more so that a duplicate would be seen."""
    found: list[uuid.UUID] = []

    def keep(record: Any) -> None:
        workflow_id = uuid.UUID(json.loads(record.value)["workflow_id"])
        if workflow_id in wanted:
            found.append(workflow_id)

    await read_from_start(
        mesh,
        [t.qualified(mesh.prefix) for t in registry().result_topics()],
        on_record=keep,
        done=lambda: wanted <= set(found),
        deadline_s=deadline_s,
        linger_s=3.0,
    )
    return found


async def _dead_letters(mesh: Mesh, source: bytes, deadline_s: float) -> DeadLetter:
    """The dead letter holding ``source`` byte for byte."""
    consumer = AIOKafkaConsumer(
        DEAD_LETTERS.qualified(mesh.prefix),
        **mesh.kafka_options(),
        group_id=f"dlq-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        async with asyncio.timeout(deadline_s):
            while True:
                for records in (await consumer.getmany(timeout_ms=250)).values():
                    for record in records:
                        letter = DeadLetter.model_validate_json(record.value)
                        if letter.original_value() == source:
                            return letter
    finally:
        await consumer.stop()


async def _publish(mesh: Mesh, *events: Envelope[Any]) -> None:
    """Publish ``events`` on the inbound topic, each with a token proving its envelope."""
    producer = AIOKafkaProducer(**mesh.kafka_options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                REQUESTS_INBOUND.qualified(mesh.prefix),
                event.model_dump_json().encode(),
                key=event.key,
                headers=mesh.inbound_headers(event),
            )
    finally:
        await producer.stop()


def test_the_same_idempotency_key_over_http_makes_one_request_and_one_result(
    mesh: Mesh,
) -> None:
    body = {"text": QUESTION, "metadata": {"ticket": "T-77"}}
    first = _post(mesh, "acme", body, key="retry-me")
    retried = _post(mesh, "acme", body, key="retry-me")
    conflicting = _post(mesh, "acme", {**body, "text": "Where is my order?"}, key="retry-me")

    assert (first.status_code, retried.status_code) == (202, 202), retried.text
    assert retried.json() == first.json()
    assert retried.headers["location"] == first.headers["location"]
    assert conflicting.status_code == 409
    assert "different body" in conflicting.json()["detail"]
    request_id = uuid.UUID(first.json()["request_id"])
    assert asyncio.run(_results(mesh, {request_id}, deadline_s=90)) == [request_id]


def test_a_redelivered_inbound_event_makes_one_result_and_a_reused_id_is_dead_lettered(
    mesh: Mesh,
) -> None:
    event = new_event(
        RequestSubmitted(text=QUESTION), workflow_id=uuid7(), tenant="globex", principal=UPSTREAM
    )
    reused = new_event(
        RequestSubmitted(text="Where is my order 4411?"),
        workflow_id=event.workflow_id,
        tenant="globex",
        principal=UPSTREAM,
    )
    other = reused.model_dump_json().encode()

    asyncio.run(_publish(mesh, event, event, reused))

    letter = asyncio.run(_dead_letters(mesh, other, deadline_s=60))
    assert letter.service == "intake"
    assert letter.error.startswith("idempotency_conflict (HTTP 409 equivalent)")
    assert asyncio.run(_results(mesh, {event.workflow_id}, deadline_s=90)) == [event.workflow_id]
    assert finished(mesh, event.workflow_id, tenant="globex")["text"] == QUESTION


def test_an_inbound_request_for_a_workflow_not_granted_is_dead_lettered(mesh: Mesh) -> None:
    event = new_event(
        RequestSubmitted(text="Refund order 4411", requested_workflow="refund"),
        workflow_id=uuid7(),
        tenant="globex",
        principal=UPSTREAM,
    )
    value = event.model_dump_json().encode()

    asyncio.run(_publish(mesh, event))

    letter = asyncio.run(_dead_letters(mesh, value, deadline_s=60))
    assert letter.error == (
        "forbidden (HTTP 403 equivalent): 'system:crm' may not start workflow 'refund'"
    )


def test_a_tenant_over_its_rate_limit_gets_429_with_retry_after(mesh: Mesh) -> None:
    answers = [_post(mesh, "throttled", {"text": QUESTION}) for _ in range(SUBMITS_PER_MINUTE + 1)]
    elsewhere = _post(mesh, "unthrottled", {"text": QUESTION})

    assert [r.status_code for r in answers] == [202] * SUBMITS_PER_MINUTE + [429]
    retry_after = answers[-1].headers["retry-after"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= 60
    assert "over its submit rate limit" in answers[-1].json()["detail"]
    assert elsewhere.status_code == 202


def test_a_tenant_never_sees_another_tenants_request(mesh: Mesh) -> None:
    request_id = _post(mesh, "initech", {"text": QUESTION}).json()["request_id"]
    base = f"{mesh.url('intake')}/v1/requests/{request_id}"
    auditor = mesh.bearer(tenant="umbrella", roles=("auditor",))

    assert httpx.get(base, headers=mesh.bearer(tenant="initech"), timeout=10).status_code == 200
    theirs = httpx.get(base, headers=auditor, timeout=10)
    stream = httpx.get(f"{base}/events", headers=auditor, timeout=10)
    unknown = httpx.get(
        f"{mesh.url('intake')}/v1/requests/{uuid.uuid4()}", headers=auditor, timeout=10
    )
    assert theirs.status_code == stream.status_code == unknown.status_code == 404
    assert httpx.get(base, timeout=10).status_code == 401


def test_the_last_event_of_a_stream_is_the_result(mesh: Mesh) -> None:
    request_id = _post(mesh, "hooli", {"text": QUESTION}).json()["request_id"]

    live = sse_events(mesh, request_id, tenant="hooli")
    replayed = sse_events(
        mesh, request_id, tenant="hooli"
    )  # after delivery: history, then the result

    for events in (live, replayed):
        (before, status), (last, result) = events[-2], events[-1]
        assert (before, status["status"]) == ("progress", "delivered")
        assert (last, result["workflow"], result["outcome"]) == (
            "result",
            "support-triage",
            "succeeded",
        )
        assert result["output"]["reply"]
    assert replayed[-1] == live[-1]
    view = httpx.get(
        f"{mesh.url('intake')}/v1/requests/{request_id}",
        headers=mesh.bearer(tenant="hooli"),
        timeout=10,
    ).json()
    assert view["result"] == live[-1][1]
