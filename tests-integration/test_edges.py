"""What the mesh does with bad input, on the real broker: refused with a reason, never
lost, and the consumer carries on. Plus the documents every service publishes."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from pactmesh_contracts.envelope import Principal, new_event
from pactmesh_contracts.events import DeadLetter, RequestStatus, RequestSubmitted
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.topics import DEAD_LETTERS, REQUESTS_INBOUND
from pactmesh_harness.mesh import SERVICES, Mesh, wait_for
from pactmesh_workflows.registry import registry

UPSTREAM = Principal(
    subject="system:crm",
    roles=("upstream-system",),
    scopes=tuple(f"workflow:{w}" for w in registry()),
)


def _valid_event() -> dict[str, Any]:
    event = new_event(
        RequestSubmitted(text="Where is my order 4411?"),
        workflow_id=uuid7(),
        tenant="acme",
        principal=UPSTREAM,
    )
    return json.loads(event.model_dump_json())


def _bad_messages() -> dict[str, bytes]:
    unknown_field = _valid_event()
    unknown_field["payload"]["priority"] = "urgent"
    wrong_type = _valid_event()
    wrong_type["payload"]["text"] = 12345
    unknown_type = _valid_event()
    unknown_type["type"] = unknown_type["payload"]["type"] = "request.submitted.v9"
    return {
        "undecodable": b"\x00not json at all{",
        "unknown_field": json.dumps(unknown_field).encode(),
        "wrong_type": json.dumps(wrong_type).encode(),
        "unknown_type": json.dumps(unknown_type).encode(),
    }


async def _produce(
    mesh: Mesh, messages: list[bytes], *, signed: bytes | None = None
) -> list[tuple[int, int]]:
    """Publish ``messages`` on the inbound topic, then ``signed`` (a valid event) with the
    token an upstream sends it with."""
    producer = AIOKafkaProducer(**mesh.kafka_options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        placed = []
        for value in messages:
            meta = await producer.send_and_wait(
                REQUESTS_INBOUND.qualified(mesh.prefix), value, key=b"k"
            )
            placed.append((meta.partition, meta.offset))
        if signed is not None:
            headers = mesh.inbound_headers(REQUESTS_INBOUND.adapter.validate_json(signed))
            meta = await producer.send_and_wait(
                REQUESTS_INBOUND.qualified(mesh.prefix), signed, key=b"k", headers=headers
            )
            placed.append((meta.partition, meta.offset))
        return placed
    finally:
        await producer.stop()


async def _dead_letters(mesh: Mesh, expected: int, deadline_s: float) -> list[DeadLetter]:
    consumer = AIOKafkaConsumer(
        DEAD_LETTERS.qualified(mesh.prefix),
        **mesh.kafka_options(),
        group_id=f"dlq-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        async with asyncio.timeout(deadline_s):
            while len(letters) < expected:
                for records in (await consumer.getmany(timeout_ms=250)).values():
                    letters += [DeadLetter.model_validate_json(r.value) for r in records]
    finally:
        await consumer.stop()
    return letters


def test_bad_inbound_events_are_dead_lettered_and_the_consumer_carries_on(mesh: Mesh) -> None:
    bad = _bad_messages()
    good = _valid_event()
    placed = asyncio.run(_produce(mesh, [*bad.values()], signed=json.dumps(good).encode()))

    letters = asyncio.run(_dead_letters(mesh, expected=len(bad), deadline_s=60))
    by_bytes = {letter.original_value(): letter for letter in letters}
    assert set(by_bytes) == set(bad.values()), "every bad message is kept, byte for byte"
    for (name, value), (partition, offset) in zip(bad.items(), placed, strict=False):
        letter = by_bytes[value]
        assert letter.service == "intake"
        assert letter.source_topic == REQUESTS_INBOUND.qualified(mesh.prefix)
        assert (letter.source_partition, letter.source_offset) == (partition, offset), name
        assert letter.original_key_b64 == "aw=="  # b"k"
        assert letter.error
    assert by_bytes[bad["undecodable"]].error_code == "undecodable"
    assert by_bytes[bad["unknown_field"]].error_code == "invalid"
    assert any(e["type"] == "extra_forbidden" for e in by_bytes[bad["unknown_field"]].errors)
    assert any(e["loc"][-1] == "text" for e in by_bytes[bad["wrong_type"]].errors)
    assert by_bytes[bad["unknown_type"]].error_code == "unknown_type"

    # The valid event that came after them is processed all the way to delivery.
    request_id = good["workflow_id"]
    wait_for(
        lambda: _status(mesh, request_id) == RequestStatus.DELIVERED,
        timeout=60,
        what="the valid event after the bad ones to be delivered",
    )


def _status(mesh: Mesh, request_id: str) -> str | None:
    response = httpx.get(
        f"{mesh.url('intake')}/v1/requests/{request_id}",
        headers=mesh.bearer(tenant="acme"),
        timeout=5,
    )
    return response.json()["status"] if response.status_code == 200 else None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "hi", "priority": "urgent"}, "priority"),
        ({}, "text"),
        ({"text": ""}, "text"),
        ({"text": 42}, "text"),
        ({"text": "hi", "requested_workflow": "Not A Workflow!"}, "requested_workflow"),
    ],
)
def test_intake_answers_422_with_the_field_errors(
    mesh: Mesh, body: dict[str, Any], field: str
) -> None:
    response = httpx.post(
        f"{mesh.url('intake')}/v1/requests", json=body, headers=mesh.bearer(), timeout=5
    )
    assert response.status_code == 422
    errors = response.json()["detail"]
    assert any(e["loc"][-1] == field for e in errors), errors


def test_unknown_request_is_404(mesh: Mesh) -> None:
    response = httpx.get(
        f"{mesh.url('intake')}/v1/requests/{uuid.uuid4()}", headers=mesh.bearer(), timeout=5
    )
    assert response.status_code == 404


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_publishes_its_asyncapi_and_openapi(mesh: Mesh, service: str) -> None:
    spec = httpx.get(f"{mesh.url(service)}/asyncapi.json", timeout=5)
    assert spec.status_code == 200
    document = spec.json()
    assert document["asyncapi"].startswith("3.")
    channels = " ".join(document["channels"])
    assert mesh.prefix.rstrip(".") in channels or mesh.prefix in json.dumps(document)
    assert httpx.get(f"{mesh.url(service)}/asyncapi", timeout=5).status_code == 200
    assert httpx.get(f"{mesh.url(service)}/openapi.json", timeout=5).status_code == 200


PUBLIC_OPERATIONS = {("GET", "/health/live"), ("GET", "/health/ready")}
"""The only operations of any service's OpenAPI document that answer without a token."""
PUBLIC_UNDOCUMENTED = {
    service: ["/docs", "/openapi.json", "/asyncapi", "/asyncapi.json", "/asyncapi.yaml", "/metrics"]
    for service in SERVICES
} | {"hitl": ["/docs", "/openapi.json", "/asyncapi", "/asyncapi.json", "/reviewer", "/metrics"]}
"""Public pages outside the OpenAPI document: the documents themselves, hitl's reviewer
page (whose API calls carry the reviewer's token), and Prometheus' ``/metrics`` (public
unless ``PACTMESH_METRICS_TOKEN`` is set, as compose sets it; no tenant's data)."""


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_needs_a_token_unless_it_is_public(mesh: Mesh, service: str) -> None:
    document = httpx.get(f"{mesh.url(service)}/openapi.json", timeout=5).json()
    operations = [
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    ]
    assert operations, f"{service} documents no operation"
    answers: dict[tuple[str, str], int] = {}
    with httpx.Client(base_url=mesh.url(service), timeout=10) as http:
        for method, path in operations:
            concrete = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            answers[(method, path)] = http.request(method, concrete).status_code
        for path in PUBLIC_UNDOCUMENTED[service]:
            assert http.get(path).status_code == 200, f"{service} {path}"
    assert {op: code for op, code in answers.items() if op not in PUBLIC_OPERATIONS} == {
        op: 401 for op in answers if op not in PUBLIC_OPERATIONS
    }
    assert {op: answers[op] for op in PUBLIC_OPERATIONS if op in answers} == {
        op: 200 for op in PUBLIC_OPERATIONS
    }
