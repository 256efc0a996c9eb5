"""Fifty requests through all six services on a real broker: every result exactly once,
one trace per request with spans from every service."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from pactmesh_contracts.envelope import Principal, new_event
from pactmesh_contracts.events import RequestStatus, RequestSubmitted
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.topics import REQUESTS_INBOUND, RESULTS
from pactmesh_harness.mesh import SERVICES, Mesh, read_from_start, wait_for
from pactmesh_harness.workflow_client import cheap_shipment
from pactmesh_workflows.registry import registry

# Requests that pass no approval gate (the gates have tests of their own): a refund of the
# order's total (129) under the automatic limit, a purchase order under 10,000, and a
# shipment whose best alternative costs less than 500 over the disrupted route.
TEXTS = (
    "How do I reset my password?",
    "I want a refund for order 4411, the headphones arrived broken",
    "Please raise a purchase order for 5 monitors from Acme, $2,000 in total",
    "The port of Long Beach is closed, reroute shipment {shipment}",
    "Where is my order? I want to track it",
)


def _texts(mesh: Mesh) -> list[str]:
    """TEXTS with a shipment whose cheapest alternative stays under the gate's 500 increase."""
    shipment = cheap_shipment(mesh)
    return [t.format(shipment=shipment) for t in TEXTS]


HTTP_TENANT = "default"
"""The tenant of the HTTP clients (the upstream system's is acme)."""
WORKFLOW_SCOPES = tuple(f"workflow:{w}" for w in registry())
UPSTREAM = Principal(
    subject="system:erp-connector", roles=("upstream-system",), scopes=WORKFLOW_SCOPES
)


async def _publish_inbound(mesh: Mesh, count: int, texts: list[str]) -> dict[uuid.UUID, float]:
    producer = AIOKafkaProducer(**mesh.kafka_options(), acks="all", enable_idempotence=True)
    await producer.start()
    sent: dict[uuid.UUID, float] = {}
    try:
        for i in range(count):
            event = new_event(
                RequestSubmitted(text=texts[i % len(texts)], metadata={"ticket": f"T-{i}"}),
                workflow_id=uuid7(),
                tenant="acme",
                principal=UPSTREAM,
            )
            await producer.send_and_wait(
                REQUESTS_INBOUND.qualified(mesh.prefix),
                event.model_dump_json().encode(),
                key=event.key,
                headers=mesh.inbound_headers(event),
            )
            sent[event.workflow_id] = time.monotonic()
    finally:
        await producer.stop()
    return sent


async def _submit_http(mesh: Mesh, count: int, texts: list[str]) -> dict[uuid.UUID, float]:
    sent: dict[uuid.UUID, float] = {}
    token = mesh.bearer(tenant=HTTP_TENANT, roles=("requester",), scopes=WORKFLOW_SCOPES)
    async with httpx.AsyncClient(base_url=mesh.url("intake"), headers=token, timeout=10) as client:
        for i in range(count):
            started = time.monotonic()
            response = await client.post("/v1/requests", json={"text": texts[i % len(texts)]})
            assert response.status_code == 202, response.text
            receipt = response.json()
            assert response.headers["location"] == receipt["status_url"]
            sent[uuid.UUID(receipt["request_id"])] = started
    return sent


async def _collect_results(
    mesh: Mesh, expected: asyncio.Future[set[uuid.UUID]], deadline_s: float
) -> list[tuple[uuid.UUID, float, dict[str, Any]]]:
    """Read every result topic as a downstream consumer until all expected results came,
    then keep reading for a few seconds so that a duplicate would be seen."""
    received: list[tuple[uuid.UUID, float, dict[str, Any]]] = []

    def keep(record: Any) -> None:
        result = RESULTS.adapter.validate_json(record.value)
        received.append((result.workflow_id, time.monotonic(), result.model_dump(mode="json")))

    await read_from_start(
        mesh,
        [t.qualified(mesh.prefix) for t in registry().result_topics()],
        on_record=keep,
        done=lambda: expected.done() and expected.result() <= {r[0] for r in received},
        deadline_s=deadline_s,
        linger_s=3.0,
    )
    return received


async def _scenario(
    mesh: Mesh,
) -> tuple[
    dict[uuid.UUID, float], dict[uuid.UUID, float], list[tuple[uuid.UUID, float, dict[str, Any]]]
]:
    expected: asyncio.Future[set[uuid.UUID]] = asyncio.get_running_loop().create_future()
    collector = asyncio.create_task(_collect_results(mesh, expected, deadline_s=120))
    texts = _texts(mesh)
    http_sent = await _submit_http(mesh, 25, texts)
    kafka_sent = await _publish_inbound(mesh, 25, texts)
    expected.set_result(set(http_sent) | set(kafka_sent))
    return http_sent, kafka_sent, await collector


def test_fifty_requests_flow_through_all_six_services_once(mesh: Mesh) -> None:
    http_sent, kafka_sent, received = asyncio.run(_scenario(mesh))
    sent = {**http_sent, **kafka_sent}
    assert len(sent) == 50

    counts = Counter(workflow_id for workflow_id, _, _ in received)
    assert set(counts) == set(sent), (
        f"missing {set(sent) - set(counts)}, unexpected {set(counts) - set(sent)}"
    )
    assert all(n == 1 for n in counts.values()), (
        f"duplicates: {[k for k, n in counts.items() if n > 1]}"
    )
    assert len(received) == 50

    latencies = sorted(at - sent[wid] for wid, at, _ in received)
    p50, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(
        f"\nend-to-end latency over 50 requests: p50 {p50 * 1000:.0f} ms,"
        f" p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
    )
    workflows = Counter(r["payload"]["workflow"] for _, _, r in received)
    assert set(workflows) == {"support-triage", "refund", "procurement", "supply-chain-reroute"}
    outcomes = Counter(r["payload"]["outcome"] for _, _, r in received)
    assert outcomes["succeeded"] == 50, outcomes
    by_id = {wid: r for wid, _, r in received}
    assert all(by_id[wid]["payload"]["metadata"]["ticket"].startswith("T-") for wid in kafka_sent)

    # Intake reports every request's journey, ending delivered.
    for request_id in http_sent:
        view = wait_for(
            lambda rid=request_id: _delivered(mesh, rid), timeout=30, what=f"{request_id} delivered"
        )
        statuses = [h["status"] for h in view["history"]]
        assert statuses[0] == RequestStatus.ACCEPTED
        journey = {
            RequestStatus.ROUTED,
            RequestStatus.RUNNING,
            RequestStatus.WAITING_FOR_TOOL,
            RequestStatus.COMPLETED,
            RequestStatus.DELIVERED,
        }
        if by_id[request_id]["payload"]["output"].get("source") == "cache":
            journey.remove(RequestStatus.WAITING_FOR_TOOL)  # the semantic cache answered
        assert journey <= set(statuses)

    # One trace per request, with spans from all six services: the tools service reads
    # every accepted request (to check tool calls against it) even when the semantic
    # cache answered and no tool ran.
    def expected_services(wid: uuid.UUID) -> set[str]:
        return set(SERVICES)

    def traces_complete() -> dict[uuid.UUID, set[str]] | None:
        services_in: dict[str, set[str]] = defaultdict(set)
        traces_of: dict[uuid.UUID, set[str]] = defaultdict(set)
        tools_ran: set[str] = set()
        for span in mesh.spans():
            trace_id = span["context"]["trace_id"]
            services_in[trace_id].add(span["resource"]["attributes"]["service.name"])
            if span["name"].startswith("execute_tool"):
                tools_ran.add(trace_id)
            if wid := span["attributes"].get("pactmesh.workflow_id"):
                traces_of[uuid.UUID(wid)].add(trace_id)
        complete = {}
        for wid in sent:
            if len(traces_of[wid]) != 1:
                return None
            trace_id = next(iter(traces_of[wid]))
            complete[wid] = services_in[trace_id]
            if complete[wid] != expected_services(wid):
                return None
            cached = by_id[wid]["payload"]["output"].get("source") == "cache"
            assert (trace_id in tools_ran) != cached, f"{wid}: a tool ran iff not cached"
        return complete

    assert len(wait_for(traces_complete, timeout=30, interval=0.5, what="complete traces")) == 50


def _delivered(mesh: Mesh, request_id: uuid.UUID) -> dict[str, Any] | None:
    view = httpx.get(
        f"{mesh.url('intake')}/v1/requests/{request_id}",
        headers=mesh.bearer(tenant=HTTP_TENANT),
        timeout=5,
    ).json()
    return view if view["status"] == RequestStatus.DELIVERED else None
