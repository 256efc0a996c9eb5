"""Issue 10's scale test: the whole mesh scaled out on a replicated cluster, losing one
instance of every service and a broker mid-run, and nothing lost or done twice.

Three Kafka nodes (every topic replicated 3 times, ``min.insync.replicas`` 2), Postgres,
two instances of each of the six services. Workflows of all five kinds, half posted
over HTTP to either intake instance, half published on the inbound topic with an
upstream's token; the ones that pass an approval gate are decided through either hitl
instance; two webhooks per tenant are registered on one delivery instance. After the
first third is submitted, ``kill -9`` takes the second instance of every service and
one broker; the next third is submitted while they are down; they are restarted, and
the last third is submitted. Then every result is on its result topic exactly once,
every side effect in the sandbox ledger exactly once, every webhook received every
result of its tenant exactly once, both intake instances report the same delivered
status, and an event stream on one intake follows a request submitted to the other to
its result. The test prints the kills and the counts.

``PACTMESH_SCALE_WORKFLOWS`` sets how many workflows (default 60, a few minutes on a
two-core machine; issue 10 names 300).

Not part of ``make test``: run it with ``make test-scale``. Its last run with instances
killed while workflows were in flight found one result published twice on its result
topic (a delivery instance killed between publishing a result and recording it, whose
successor published it again): delivery's result publish is at-least-once until it is
made transactional, and this test stays out of the CI gate until then.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import cycle
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import RequestSubmitted, WorkflowResult
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.topics import REQUESTS_INBOUND, RESULTS
from pactmesh_contracts.webhooks import DELIVERY_HEADER
from pactmesh_harness.cluster import LocalCluster, local_cluster
from pactmesh_harness.mesh import SERVICES, Mesh, read_from_start, wait_for
from pactmesh_harness.scaled import running_scaled_mesh
from pactmesh_harness.webhooks import Receiver, receiving, register
from pactmesh_harness.workflow_client import (
    cheap_shipment,
    decide,
    events,
    ledger,
    reviews,
    status,
    submit,
)
from pactmesh_workflows.registry import registry

WORKFLOWS = int(os.environ.get("PACTMESH_SCALE_WORKFLOWS", "60"))
_DELIVERY = DELIVERY_HEADER.lower()
"""How many workflows the test runs (issue 10 names 300; CI runs the default)."""
VICTIMS = tuple(f"{service}-2" for service in SERVICES)
"""One instance of every service, killed mid-run and restarted."""
BROKER_VICTIM = 3
"""The Kafka node killed mid-run."""
INTAKES = ("intake", "intake-2")
HITLS = ("hitl", "hitl-2")
HTTP_TENANT, INBOUND_TENANT = "default", "acme"
WORKFLOW_SCOPES = tuple(f"workflow:{w}" for w in registry())
UPSTREAM = Principal(
    subject="system:erp-connector", roles=("upstream-system",), scopes=WORKFLOW_SCOPES
)
PRIOR_AUTHORIZATION = (
    "Prior authorization request for member XJH482913057: lumbar spine MRI, CPT 72148,"
    " diagnosis M54.16, ordering provider NPI 1234567893, date of service 2031-03-02,"
    " place of service 22. Clinical justification: {justification}"
)


@dataclass(frozen=True)
class Kind:
    """A kind of request: its text, its workflow and the side effect it commits."""

    text: str
    workflow: str
    side_effect: str | None
    gated: bool = False
    """Whether it waits for a reviewer's approval."""


def _kinds(mesh: Mesh) -> list[Kind]:
    """Every workflow, each without and (procurement, prior authorization) with a gate."""
    shipment = cheap_shipment(mesh)
    return [
        Kind("How do I reset my password?", "support-triage", None),
        Kind("I want a refund for order 4411, the headphones arrived broken", "refund", "refund"),
        Kind(
            "Please raise a purchase order for 5 monitors from Acme, $2,000 in total",
            "procurement",
            "purchase_order",
        ),
        Kind(
            f"The port of Long Beach is closed, reroute shipment {shipment}",
            "supply-chain-reroute",
            "booking",
        ),
        Kind(
            PRIOR_AUTHORIZATION.format(
                justification="radicular pain for 8 weeks despite six weeks of physical"
                " therapy; progressive weakness of the left foot."
            ),
            "prior-authorization",
            "prior_authorization",
        ),
        Kind(
            "Please raise a purchase order for 25 laptops from Acme, about $30,000",
            "procurement",
            "purchase_order",
            gated=True,
        ),
        Kind(
            PRIOR_AUTHORIZATION.format(
                justification="low back pain radiating to the leg for 3 weeks, no better with rest."
            ),
            "prior-authorization",
            "prior_authorization",
            gated=True,
        ),
    ]


@dataclass
class Run:
    """What the test submitted and what it saw."""

    kinds: dict[uuid.UUID, Kind] = field(default_factory=dict)
    tenants: dict[uuid.UUID, str] = field(default_factory=dict)
    decided: dict[str, str] = field(default_factory=dict)
    """Review id to the hitl instance that decided it."""
    kills: list[str] = field(default_factory=list)

    def submitted(self, request_id: uuid.UUID, kind: Kind, tenant: str) -> None:
        self.kinds[request_id], self.tenants[request_id] = kind, tenant


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with local_cluster(tmp_path_factory.mktemp("scale-kafka") / "data") as started:
        print(f"\nkafka: {started.nodes}-node cluster ready in {started.startup_s:.1f}s")
        yield started


@pytest.fixture(scope="module")
def scaled(
    cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[Mesh]:
    # a restarted instance's relays and leases take over in seconds, not the default 30
    env = {
        "PACTMESH_OUTBOX_LEASE_S": "5",
        "PACTMESH_TOOLS_INBOX_LEASE_S": "10",
        # The offline models run on the CPU: with hundreds of requests at once on two
        # cores a call can wait past the default 30 s budget, and routing then sends the
        # request to human triage, as designed. What this test checks is that nothing is
        # lost or done twice, so the models get a budget the machine can keep.
        "PACTMESH_MODELS_JSON": json.dumps(
            {
                role: {"primary": {"model": "pactmesh-offline:default", "latency_budget_s": 600}}
                for role in ("routing", "extraction", "drafting")
            }
        ),
    }
    with running_scaled_mesh(
        cluster.broker(cluster.startup_s),
        tmp_path_factory.mktemp("scale"),
        postgres_url=postgres_url,
        env=env,
    ) as mesh:
        print(f"mesh: {len(mesh.processes)} processes ready in {mesh.startup_s:.1f}s")
        yield mesh


# -- submitting ---------------------------------------------------------------------------


def _submit_http(mesh: Mesh, run: Run, kind: Kind, intake: str) -> None:
    # A broker's loss moves partition leaders: an acknowledgement may take a while.
    request_id = submit(
        mesh, kind.text, scopes=WORKFLOW_SCOPES, tenant=HTTP_TENANT, intake=intake, timeout=180
    )
    run.submitted(request_id, kind, HTTP_TENANT)


async def _publish_inbound(mesh: Mesh, run: Run, kinds: list[Kind]) -> None:
    producer = AIOKafkaProducer(**mesh.kafka_options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for kind in kinds:
            event = new_event(
                RequestSubmitted(text=kind.text),
                workflow_id=uuid7(),
                tenant=INBOUND_TENANT,
                principal=UPSTREAM,
            )
            await producer.send_and_wait(
                REQUESTS_INBOUND.qualified(mesh.prefix),
                event.model_dump_json().encode(),
                key=event.key,
                headers=mesh.inbound_headers(event),
            )
            run.submitted(event.workflow_id, kind, INBOUND_TENANT)
    finally:
        await producer.stop()


def _submit_batch(mesh: Mesh, run: Run, kinds: list[Kind], intakes: tuple[str, ...]) -> None:
    """Half of ``kinds`` over HTTP, to ``intakes`` in turn; half on the inbound topic."""
    over_http, inbound = kinds[0::2], kinds[1::2]
    for kind, intake in zip(over_http, cycle(intakes), strict=False):
        _submit_http(mesh, run, kind, intake)
    asyncio.run(_publish_inbound(mesh, run, inbound))


# -- approving ------------------------------------------------------------------------------


class Approver(threading.Thread):
    """Approves every pending review of the run's requests, through each hitl instance in
    turn (the other one when that one is down), until stopped."""

    def __init__(self, mesh: Mesh, run: Run) -> None:
        super().__init__(name="approver", daemon=True)
        self.mesh, self.submitted = mesh, run
        self.stopping = threading.Event()
        self.turn = cycle(HITLS)

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            for tenant in (HTTP_TENANT, INBOUND_TENANT):
                for review in self._pending(tenant):
                    if uuid.UUID(review["workflow_id"]) in self.submitted.kinds:
                        self._approve(review, tenant)

    def _pending(self, tenant: str) -> list[dict[str, Any]]:
        for hitl in HITLS:
            try:
                return reviews(self.mesh, tenant=tenant, hitl=hitl)
            except (httpx.HTTPError, AssertionError):
                continue  # that instance is down: ask the other
        return []

    def _approve(self, review: dict[str, Any], tenant: str) -> None:
        first = next(self.turn)
        for hitl in (first, *(h for h in HITLS if h != first)):
            try:
                answer = decide(
                    self.mesh,
                    review["review_id"],
                    "approve",
                    roles=[review["required_role"]],
                    tenant=tenant,
                    hitl=hitl,
                )
            except httpx.HTTPError:
                continue
            if answer.status_code == 200:
                self.submitted.decided[review["review_id"]] = hitl
                return


# -- killing ------------------------------------------------------------------------------


def _kill(mesh: Mesh, cluster: LocalCluster, run: Run) -> None:
    for victim in VICTIMS:
        pid = mesh.processes[victim].pid
        mesh.stop(victim, sig=signal.SIGKILL)
        run.kills.append(f"kill -9 {victim} (pid {pid})")
    pid = cluster.kill(BROKER_VICTIM)
    run.kills.append(f"kill -9 kafka node {BROKER_VICTIM} (pid {pid})")


def _restart(mesh: Mesh, cluster: LocalCluster, run: Run) -> None:
    took = cluster.start()
    run.kills.append(f"kafka node {BROKER_VICTIM} back in {took:.1f}s")
    for victim in VICTIMS:
        mesh.start(victim)
    started = time.monotonic()
    for victim in VICTIMS:
        wait_for(lambda v=victim: mesh.ready(v), timeout=180, what=f"{victim} back")
    run.kills.append(f"{len(VICTIMS)} instances back in {time.monotonic() - started:.1f}s")


# -- checking -------------------------------------------------------------------------------


def _statuses(mesh: Mesh, run: Run, intake: str) -> dict[uuid.UUID, dict[str, Any]]:
    """Every request's status view on ``intake`` (``{}`` while it does not know one)."""
    views = {}
    for request_id, tenant in run.tenants.items():
        views[request_id] = status(mesh, request_id, tenant=tenant, missing_ok=True, intake=intake)
    return views


def _delivered(mesh: Mesh, run: Run) -> int:
    return sum(v.get("status") == "delivered" for v in _statuses(mesh, run, "intake").values())


async def _results(mesh: Mesh, expected: set[uuid.UUID]) -> list[tuple[str, Any]]:
    """Every record of every result topic, as (topic, result)."""
    seen: list[tuple[str, Any]] = []
    await read_from_start(
        mesh,
        [t.qualified(mesh.prefix) for t in registry().result_topics()],
        on_record=lambda r: seen.append((r.topic, RESULTS.adapter.validate_json(r.value))),
        done=lambda: expected <= {result.workflow_id for _, result in seen},
        deadline_s=120,
        linger_s=5.0,
    )
    return seen


def _check_results(mesh: Mesh, run: Run) -> Counter[str]:
    seen = asyncio.run(_results(mesh, set(run.kinds)))
    counts = Counter(result.workflow_id for _, result in seen)
    assert set(counts) == set(run.kinds), f"missing {set(run.kinds) - set(counts)}"
    assert [rid for rid, n in counts.items() if n != 1] == [], "every result exactly once"
    for topic, result in seen:
        kind = run.kinds[result.workflow_id]
        assert topic == f"{mesh.prefix}results.{kind.workflow}", (
            topic,
            kind,
            status(mesh, result.workflow_id, tenant=run.tenants[result.workflow_id]),
        )
        assert (result.payload.workflow, result.payload.outcome) == (kind.workflow, "succeeded"), (
            result.workflow_id,
            result.payload.error,
            status(mesh, result.workflow_id, tenant=run.tenants[result.workflow_id]),
        )
    return Counter(result.payload.workflow for _, result in seen)


def _check_ledger(mesh: Mesh, run: Run) -> Counter[str]:
    entries = ledger(mesh)
    keys = Counter(e["idempotency_key"] for e in entries)
    mine = [e for e in entries if uuid.UUID(e["idempotency_key"].split(":")[0]) in run.kinds]
    assert [k for k, n in keys.items() if n != 1] == [], "every side effect at most once"
    committed = Counter(uuid.UUID(e["idempotency_key"].split(":")[0]) for e in mine)
    for request_id, kind in run.kinds.items():
        kinds = [e["kind"] for e in mine if e["idempotency_key"].startswith(f"{request_id}:")]
        assert kinds == ([kind.side_effect] if kind.side_effect else []), (request_id, kinds)
    assert sum(committed.values()) == sum(1 for k in run.kinds.values() if k.side_effect)
    return Counter(e["kind"] for e in mine)


def _check_webhooks(receiver: Receiver, run: Run, hooks: dict[str, str]) -> dict[str, str]:
    """Every result of a tenant reaches each of its webhooks as exactly one delivery (one
    ``Pactmesh-Delivery`` id). A delivery may arrive again with the same id: a kill of a
    delivery instance between the receiver's 2xx and its record sends it again (HTTP is
    at-least-once; receivers deduplicate on the id, README "Webhooks"). Two different
    deliveries of one result would be a duplicate no receiver could recognise."""
    counts = {}
    for path, tenant in hooks.items():
        deliveries: dict[uuid.UUID, set[str | None]] = {}
        received = receiver.at(path)
        for r in received:
            result = Envelope[WorkflowResult].model_validate_json(r.body).workflow_id
            delivery = next((v for k, v in r.headers.items() if k.lower() == _DELIVERY), None)
            deliveries.setdefault(result, set()).add(delivery)
        expected = {rid for rid, t in run.tenants.items() if t == tenant}
        assert set(deliveries) == expected, f"{path}: missing {expected - set(deliveries)}"
        assert all(None not in ids for ids in deliveries.values()), f"{path}: no delivery id"
        twice = [rid for rid, ids in deliveries.items() if len(ids) != 1]
        assert twice == [], f"{path}: one delivery per result"
        repeats = len(received) - len(deliveries)
        counts[path] = f"{len(deliveries)}" + (f" ({repeats} sent again)" if repeats else "")
    assert receiver.bad_signatures == []
    return counts


def _check_statuses(mesh: Mesh, run: Run) -> None:
    first, second = (_statuses(mesh, run, intake) for intake in INTAKES)
    for request_id in run.kinds:
        assert first[request_id] == second[request_id], request_id
        assert first[request_id]["status"] == "delivered", first[request_id]
        assert first[request_id]["result"]["outcome"] == "succeeded"


def _check_stream(mesh: Mesh) -> None:
    """A stream on the restarted intake follows a request submitted to the other."""
    request_id = submit(mesh, "How do I reset my password?", intake="intake")
    streamed = events(mesh, request_id, intake="intake-2", read_s=240)
    kind, result = streamed[-1]
    assert kind == "result"
    assert result == status(mesh, request_id, intake="intake")["result"]


# -- the test -------------------------------------------------------------------------------


@pytest.mark.skipif(
    os.environ.get("PACTMESH_SCALE_TEST") != "1",
    reason="the scale test runs with `make test-scale` (PACTMESH_SCALE_TEST=1), see the docstring",
)
@pytest.mark.timeout(1800)
def test_scaled_out_mesh_loses_nothing_and_does_nothing_twice_through_kills(
    scaled: Mesh, cluster: LocalCluster
) -> None:
    kinds = _kinds(scaled)
    plan = [kinds[n % len(kinds)] for n in range(WORKFLOWS)]
    third = WORKFLOWS // 3
    run = Run()
    with receiving() as receiver:
        hooks = {"/acme/a": INBOUND_TENANT, "/acme/b": INBOUND_TENANT}
        hooks |= {"/default/a": HTTP_TENANT, "/default/b": HTTP_TENANT}
        for path, tenant in hooks.items():
            register(scaled, receiver, tenant=tenant, path=path, delivery="delivery")
        approver = Approver(scaled, run)
        approver.start()
        started = time.monotonic()
        try:
            _submit_batch(scaled, run, plan[:third], INTAKES)
            # the kills land at once, while the first third is in flight
            in_flight = len(run.kinds) - _delivered(scaled, run)
            _kill(scaled, cluster, run)
            run.kills.append(f"({in_flight} of {len(run.kinds)} submitted were in flight)")
            _submit_batch(scaled, run, plan[third : 2 * third], INTAKES[:1])
            _restart(scaled, cluster, run)
            _submit_batch(scaled, run, plan[2 * third :], INTAKES)
            wait_for(
                lambda: _delivered(scaled, run) == WORKFLOWS,
                timeout=max(600, 6 * WORKFLOWS),
                interval=2.0,
                what=f"all {WORKFLOWS} delivered",
            )
        finally:
            approver.stopping.set()
            approver.join(timeout=30)
        took = time.monotonic() - started
        per_tenant = Counter(run.tenants.values())
        wait_for(
            lambda: all(len(receiver.at(p)) >= per_tenant[t] for p, t in hooks.items()),
            timeout=120,
            what="every webhook delivery",
        )
        print(f"\n{WORKFLOWS} workflows delivered in {took:.0f}s through:")
        print("\n".join(f"  {kill}" for kill in run.kills))
        results = _check_results(scaled, run)
        effects = _check_ledger(scaled, run)
        hooked = _check_webhooks(receiver, run, hooks)
    _check_statuses(scaled, run)
    _check_stream(scaled)
    decided_by = Counter(run.decided.values())
    print(f"  results per workflow: {dict(results)}")
    print(f"  side effects in the ledger: {dict(effects)}")
    print(f"  webhook deliveries per subscriber: {hooked}")
    print(f"  approvals per hitl instance: {dict(decided_by)}")
    assert set(decided_by) == set(HITLS), "approvals went through both hitl instances"
