"""The fault suite: what the mesh depends on fails while workflows are in flight, and
every workflow still completes exactly once, every side effect happens exactly once
(the sandbox ledger), and nothing is dead-lettered that was not poison.

One mesh for the module: the orchestrator on Postgres, the data dir on a small tmpfs
(so that it can be filled), drafting through the model simulator. Each case submits
purchase orders (a side effect each, keyed by workflow and step), makes its fault while
some are still running, and prints how long recovery took and the counts.

- Postgres stopped for 20 s: the orchestrator's partitions stall (not ready), then go on.
- The broker stopped for 15 s; a service restarted meanwhile waits for it.
- The data dir's filesystem full for 10 s: the SQLite stores' partitions stall, then go on.
- A 2 MB and a 900 KB invalid message on the inbound topic: refused (bounded dead
  letters), and the partition keeps flowing.
- A model stream that dies after three tokens: the draft restarts on the next model,
  and the requester's SSE stream says so.
- Tool calls never answered (the tools service frozen, its backends hanging): the
  orchestrator's deadlines send each run down its recovery path (the retry, same
  idempotency key); the answers that come late change nothing.
- hitl killed (its test hook) between a decision's commit and its publish: after the
  restart its outbox relay publishes the decision, and the order goes through once.
- Intake publishes whose acknowledgements time out (its test hook): each request keeps
  its id (its Idempotency-Key answers it again), its event is published again with the
  same event id, and one workflow runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from pactmesh_contracts.envelope import Principal, new_event
from pactmesh_contracts.events import DeadLetter, RequestSubmitted
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.topics import DEAD_LETTERS, REQUESTS_ACCEPTED, REQUESTS_INBOUND, RESULTS
from pactmesh_harness.faults import Timing, allow_message_bytes, down, full_disk, tmpfs
from pactmesh_harness.mesh import MODEL_SIM, SERVICES, Broker, Mesh, read_from_start, running_mesh
from pactmesh_harness.mesh import wait_for as poll
from pactmesh_harness.postgres import PostgresServer
from pactmesh_harness.workflow_client import (
    decide,
    fault,
    ledger,
    pending_review,
    requester,
    submit,
)
from pactmesh_harness.workflow_client import events as sse_events
from pactmesh_workflows.registry import registry
from pydantic import ValidationError

ORDERS = 30
"""Purchase orders in flight in each case."""
TOOL_TIMEOUT_S, DEADLINE_MARGIN_S = 8.0, 20.0
"""In the case of calls never answered (only: a busy machine must not send the other
cases' calls down their recovery paths), a call's deadline, and how long after it the
orchestrator stops waiting."""
TOOL_DEADLINE_S = TOOL_TIMEOUT_S + DEADLINE_MARGIN_S
DRAFT_MODEL, FALLBACK_MODEL = "sim-draft", "sim-fallback"


def _spec(model: str) -> dict[str, Any]:
    return {
        "model": f"openai:{model}",
        "base_url": "{model_sim_url}/v1",
        "api_key": "sk-simulator",
        "latency_budget_s": 5.0,
    }


MODELS = {
    "drafting": {
        "primary": _spec(DRAFT_MODEL),
        "fallbacks": [_spec(FALLBACK_MODEL), {"model": "pactmesh-offline:default"}],
    }
}
UPSTREAM = Principal(
    subject="system:crm",
    roles=("upstream-system",),
    scopes=tuple(f"workflow:{w}" for w in registry()),
)


def _fault_env(root: Path) -> dict[str, str]:
    return {
        "PACTMESH_MODELS_JSON": json.dumps(MODELS),
        "PACTMESH_ORCHESTRATOR_CACHE_ENABLED": "false",  # every question reaches drafting
        "PACTMESH_RETRY_BACKOFF_MAX_S": "2",  # retry often: recovery is measured
        "PACTMESH_SHUTDOWN_GRACE_S": "10",
        # the sandbox is the enterprise's app, not the mesh: its ledger is not on the
        # mesh's disk, which one case fills
        "PACTMESH_SANDBOX_DATABASE": str(root / "sandbox.sqlite3"),
    }


@pytest.fixture(scope="module")
def mesh(
    broker: Broker,
    postgres_server: PostgresServer,
    postgres_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Mesh]:
    """The mesh with its state in Postgres, its data dir on a small tmpfs."""
    root = tmp_path_factory.mktemp("faults")
    env = {"PACTMESH_POSTGRES_URL": postgres_url, **_fault_env(root)}
    with (
        tmpfs(root / "data", size_mb=256) as data,
        running_mesh(broker, data, env=env, model_sim=True, log_dir=root / "logs") as running,
    ):
        print(f"\nfault mesh: ready in {running.startup_s:.1f}s (data dir on a 256 MB tmpfs)")
        yield running


@pytest.fixture
def sqlite_mesh(broker: Broker, tmp_path: Path) -> Iterator[Mesh]:
    """The embedded default: every store a SQLite file in the data dir, on a tmpfs (the
    disk a full-disk case fills; on Postgres the data dir holds no state)."""
    with (
        tmpfs(tmp_path / "data", size_mb=256) as data,
        running_mesh(
            broker, data, env=_fault_env(tmp_path), model_sim=True, log_dir=tmp_path / "logs"
        ) as running,
    ):
        yield running


@dataclass
class Case:
    """One fault: the workflows it had in flight, and how it went."""

    name: str
    orders: list[uuid.UUID]
    """Purchase orders: one side effect each."""
    dead_before: int
    others: list[uuid.UUID] = field(default_factory=list)
    """Other workflows of the case (no side effects)."""
    timing: Timing | None = None

    @property
    def ids(self) -> list[uuid.UUID]:
        """Every workflow of the case."""
        return [*self.orders, *self.others]


def _orders(
    mesh: Mesh, count: int = ORDERS, *, requested: bool = False, erp_latency_ms: int = 4000
) -> list[uuid.UUID]:
    """``requested``: the submitter names the workflow, so routing asks no model (a busy
    machine's model timeouts send requests to a person instead)."""
    # Keeps workflows in flight long enough for the fault to catch some, even when the
    # machine is quiet and the submissions are quick (with 1 s calls, 0 of 30 were still
    # in flight at the fault in two cases on a quiet machine, 2026-12-07).
    fault(mesh, "erp", latency_ms=erp_latency_ms)
    return [
        submit(
            mesh,
            f"Please raise a purchase order for {n % 9 + 1} chairs from Acme, "
            f"${(n % 9 + 1) * 100} in total",
            "procurement" if requested else None,
            scopes=("workflow:procurement",),
        )
        for n in range(count)
    ]


def _delivered(mesh: Mesh, ids: list[uuid.UUID]) -> int:
    with httpx.Client(base_url=mesh.url("intake"), headers=requester(mesh), timeout=10) as http:
        return sum(
            http.get(f"/v1/requests/{rid}").json().get("status") == "delivered" for rid in ids
        )


def _ready(mesh: Mesh, service: str) -> tuple[int, dict[str, Any]]:
    try:
        response = httpx.get(f"{mesh.url(service)}/health/ready", timeout=3)
    except httpx.HTTPError as exc:
        return 0, {"status": type(exc).__name__}
    return response.status_code, response.json()


def _all_ready(mesh: Mesh) -> bool:
    return all(_ready(mesh, s)[0] == 200 for s in SERVICES)


def _stalled(mesh: Mesh, services: tuple[str, ...]) -> str | None:
    """The first of ``services`` reporting stalled partitions, with what it says."""
    for service in services:
        code, body = _ready(mesh, service)
        if code == 503 and body.get("status") == "stalled":
            where = body["stalled"][0]
            return f"{service}: {where['topic']}[{where['partition']}] ({where['error'][:80]})"
    return None


def _dead_letters(mesh: Mesh) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    asyncio.run(
        read_from_start(
            mesh,
            [DEAD_LETTERS.qualified(mesh.prefix)],
            on_record=lambda r: found.append(DeadLetter.model_validate_json(r.value)),
            done=lambda: True,
            deadline_s=5,
            linger_s=2,
        )
    )
    return found


def _start(
    mesh: Mesh,
    name: str,
    *,
    orders: int = ORDERS,
    requested: bool = False,
    erp_latency_ms: int = 4000,
) -> Case:
    """Purchase orders submitted, and still running: the fault comes next, at once."""
    poll(lambda: _all_ready(mesh), timeout=120, interval=0.5, what="every service ready")
    submitted = _orders(mesh, orders, requested=requested, erp_latency_ms=erp_latency_ms)
    return Case(name, submitted, len(_dead_letters(mesh)))


def _in_flight(mesh: Mesh, case: Case) -> None:
    """Print, and check, how many workflows the fault caught running."""
    running = len(case.ids) - _delivered(mesh, case.ids)
    print(f"\n{case.name}: {running} of {len(case.ids)} workflows in flight")
    assert running > 0


def _undelivered(mesh: Mesh, ids: list[uuid.UUID]) -> dict[str, Any]:
    """Where each workflow not delivered stands: intake's status, the run's last steps."""
    found: dict[str, Any] = {}
    with httpx.Client(headers=requester(mesh), timeout=10) as http:
        for rid in ids:
            status = http.get(f"{mesh.url('intake')}/v1/requests/{rid}").json().get("status")
            if status == "delivered":
                continue
            run = http.get(f"{mesh.url('orchestrator')}/v1/workflows/runs/{rid}").json()
            history = run.get("values", {}).get("history", [])
            found[str(rid)] = (status, [(h["step"], h["event"]) for h in history][-3:])
    return found


def _results(mesh: Mesh, ids: list[uuid.UUID]) -> tuple[dict[uuid.UUID, set[str]], int]:
    """Result event ids per workflow, and the number of records read."""
    seen: dict[uuid.UUID, set[str]] = defaultdict(set)
    records = Counter[str]()
    wanted = set(ids)

    def count(record: Any) -> None:
        result = RESULTS.adapter.validate_json(record.value)
        if result.workflow_id in wanted:
            seen[result.workflow_id].add(str(result.event_id))
            records["all"] += 1

    asyncio.run(
        read_from_start(
            mesh,
            [t.qualified(mesh.prefix) for t in registry().result_topics()],
            on_record=count,
            done=lambda: wanted <= set(seen),
            deadline_s=60,
            linger_s=3.0,
        )
    )
    return seen, records["all"]


def _finish(mesh: Mesh, case: Case, *, new_dead: int = 0) -> None:
    """Wait for every workflow; check exactly once; print recovery time and counts."""
    timing = case.timing
    assert timing is not None
    poll(lambda: _all_ready(mesh), timeout=180, interval=0.5, what="every service ready again")
    ready_s = timing.since_end()
    try:
        poll(
            lambda: _delivered(mesh, case.ids) == len(case.ids),
            timeout=240,
            interval=0.5,
            what="every workflow delivered",
        )
    except TimeoutError:
        print(f"\nnot delivered: {_undelivered(mesh, case.ids)}")
        raise
    done_s = timing.since_end()
    results, records = _results(mesh, case.ids)
    assert set(results) == set(case.ids)
    assert {rid: len(ids) for rid, ids in results.items() if len(ids) != 1} == {}, (
        "one result per workflow"
    )
    orders = Counter(e["idempotency_key"] for e in ledger(mesh, "purchase_order"))
    mine = {rid: orders[f"{rid}:commit_order"] for rid in case.orders}
    assert {str(rid): n for rid, n in mine.items() if n != 1} == {}, "one order per workflow"
    dead = len(_dead_letters(mesh)) - case.dead_before
    print(
        f"\n{case.name}: down {timing.down_s:.1f} s (fault {timing.ended - timing.started:.1f}"
        " s with its stop and start); after it, every "
        f"service ready in {ready_s:.1f} s and all {len(case.ids)} workflows delivered in "
        f"{done_s:.1f} s; results {len(results)} (records {records}), purchase orders "
        f"{sum(mine.values())}, new dead letters {dead}"
    )
    assert dead == new_dead, "nothing dead-lettered that was not poison"


@pytest.mark.timeout(420)
def test_postgres_stopped_for_20_s(mesh: Mesh, postgres_server: PostgresServer) -> None:
    if postgres_server.halt is None or postgres_server.resume is None:
        pytest.skip("an external Postgres cannot be stopped here")
    case = _start(mesh, "postgres stopped")
    _in_flight(mesh, case)
    with down(postgres_server.halt, postgres_server.resume, for_s=20) as case.timing:
        stalled = poll(
            lambda: _stalled(mesh, ("orchestrator",)), timeout=18, interval=0.3, what="a stall"
        )
        print(f"\nduring the outage, not ready: {stalled}")
    _finish(mesh, case)


@pytest.mark.timeout(420)
def test_broker_stopped_for_15_s(mesh: Mesh, broker: Broker) -> None:
    if broker.halt is None or broker.resume is None:
        pytest.skip("an external broker cannot be stopped here")
    case = _start(mesh, "broker stopped")
    _in_flight(mesh, case)
    with down(broker.halt, broker.resume, for_s=15) as case.timing:
        # a service restarted while Kafka is down: stops within its grace, then waits
        stopped = time.monotonic()
        mesh.stop("routing", timeout=30)
        print(f"\nrouting stopped in {time.monotonic() - stopped:.1f} s with the broker down")
        mesh.start("routing")
        poll(lambda: "waiting for Kafka" in mesh.log("routing"), timeout=90, what="a wait line")
        assert mesh.processes["routing"].poll() is None, "routing waits instead of exiting"
    _finish(mesh, case)


@pytest.mark.timeout(420)
def test_data_dir_full_for_10_s(sqlite_mesh: Mesh) -> None:
    mesh = sqlite_mesh
    case = _start(mesh, "data dir full")
    shrinking = time.monotonic()
    _shrink_write_ahead_logs(mesh.data_dir)
    print(f"\nwrite-ahead logs shrunk in {time.monotonic() - shrinking:.1f} s")
    _in_flight(mesh, case)
    with full_disk(mesh.data_dir, for_s=10) as case.timing:
        stalled = poll(
            lambda: _stalled(mesh, ("intake", "tools", "delivery", "hitl")),
            timeout=9,
            interval=0.3,
            what="a stall",
        )
        print(f"\nwith the disk full, not ready: {stalled}")
    _finish(mesh, case)


def _shrink_write_ahead_logs(data_dir: Path) -> None:
    """Checkpoint every SQLite store's WAL and truncate it, as after a quiet spell: its
    next writes then need new space (a WAL reuses the space it grew to, so a full disk
    would not touch a store whose WAL is already large)."""
    for path in data_dir.glob("*.sqlite3"):
        with sqlite3.connect(path, timeout=10) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _submitted(text: str) -> bytes:
    event = new_event(
        RequestSubmitted(text=text), workflow_id=uuid7(), tenant="default", principal=UPSTREAM
    )
    return event.model_dump_json().encode()


async def _publish_inbound(mesh: Mesh, values: list[bytes], *, partition: int) -> None:
    """Publish ``values`` on one partition of the inbound topic, each valid request with
    the token an upstream sends it with (the invalid ones with none)."""
    producer = AIOKafkaProducer(**mesh.kafka_options(), acks="all", max_request_size=4 * 1_048_576)
    await producer.start()
    try:
        topic = REQUESTS_INBOUND.qualified(mesh.prefix)
        for value in values:
            try:
                headers = mesh.inbound_headers(REQUESTS_INBOUND.adapter.validate_json(value))
            except ValidationError:
                headers = None
            await producer.send_and_wait(
                topic, value, key=b"poison", partition=partition, headers=headers
            )
    finally:
        await producer.stop()


@pytest.mark.timeout(420)
def test_huge_invalid_messages_on_the_inbound_topic(mesh: Mesh) -> None:
    inbound = REQUESTS_INBOUND.qualified(mesh.prefix)
    allow_message_bytes(mesh.kafka_options(), inbound, 4 * 1_048_576)  # a deployment may allow it
    case = _start(mesh, "2 MB and 900 KB invalid inbound messages")
    big = b'{"type": "request.submitted.v1", "blob": "' + b"x" * 2_000_000 + b'"}'
    large = b'{"type": "request.submitted.v1", "blob": "' + b"y" * 900_000 + b'"}'
    after = [_submitted(f"Where is my order {n}?") for n in range(5)]
    case.timing = Timing(started=time.monotonic())
    asyncio.run(_publish_inbound(mesh, [big, large, *after], partition=0))
    case.timing.ended = time.monotonic()
    case.timing.down_s = case.timing.ended - case.timing.started
    followers = [uuid.UUID(json.loads(v)["workflow_id"]) for v in after]
    poll(
        lambda: _delivered(mesh, followers) == len(followers),
        timeout=120,
        interval=0.5,
        what="the partition flowing on",
    )
    letters = [d for d in _dead_letters(mesh) if d.source_topic == inbound]
    by_size = sorted(letters, key=lambda d: d.original_size or 0)
    assert [(d.error_code, d.original_size) for d in by_size] == [
        ("invalid", len(large)),
        ("too_large", len(big)),
    ]
    for letter in letters:
        assert letter.original_truncated
        assert len(letter.model_dump_json()) < 1_000_000
        assert "yyyy" not in letter.error
    print(f"\ndead letters: {[(d.error_code, len(d.model_dump_json())) for d in by_size]}")
    _finish(mesh, case, new_dead=2)


def _configure(mesh: Mesh, model: str, **config: Any) -> None:
    url = f"{mesh.url(MODEL_SIM)}/sim/config/models/{model}"
    assert httpx.put(url, json=config, timeout=10).status_code == 204


@pytest.mark.timeout(420)
def test_a_model_stream_that_dies_after_three_tokens(mesh: Mesh) -> None:
    # The fill scenario's known text, to check the pieces sent before the break.
    _configure(
        mesh, DRAFT_MODEL, scenario="fill", fail_next=["stream_dies"], stream_fault_after_tokens=3
    )
    question = submit(mesh, "How do I reset my password?")
    events = sse_events(mesh, question, read_s=90)
    tokens = [data for kind, data in events if kind == "token"]
    [restart] = [i for i, t in enumerate(tokens) if t.get("restarted_on")]
    assert tokens[restart]["restarted_on"] == f"openai:{FALLBACK_MODEL}"
    broken_off = "".join(t["text"] for t in tokens[:restart])
    assert broken_off, "the first model's tokens reached the client before it broke off"
    assert "Simulated answer to:".startswith(broken_off)
    kind, result = events[-1]
    assert kind == "result"
    assert result["output"]["drafted_by"] == f"openai:{FALLBACK_MODEL}"
    assert result["output"]["reply"] == "".join(t["text"] for t in tokens[restart:]).strip()

    _configure(mesh, DRAFT_MODEL, fail_next=["stream_dies"] * 3, stream_fault_after_tokens=3)
    case = _start(mesh, "model streams dying after three tokens", orders=10)
    case.timing = Timing(started=time.monotonic())
    questions = [submit(mesh, f"How do I reset my password? ({n})") for n in range(10)]
    case.others += questions
    poll(lambda: _delivered(mesh, questions) == len(questions), timeout=120, what="answers")
    case.timing.ended = time.monotonic()
    case.timing.down_s = case.timing.ended - case.timing.started
    stats = httpx.get(f"{mesh.url(MODEL_SIM)}/sim/stats", timeout=10).json()["by_model"]
    assert stats[DRAFT_MODEL]["stream_dies"] == 4
    print(f"\nmodel simulator: {stats}")
    _finish(mesh, case)


def _history(mesh: Mesh, rid: uuid.UUID) -> list[dict[str, Any]]:
    with httpx.Client(headers=requester(mesh), timeout=10) as http:
        run = http.get(f"{mesh.url('orchestrator')}/v1/workflows/runs/{rid}").json()
    return list(run.get("values", {}).get("history", []))


def _past_deadline(mesh: Mesh, ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """The workflows a deadline of the orchestrator's own sent down a recovery path."""
    return [
        rid
        for rid in ids
        if any(
            h["event"] == "tool_failed" and "orchestrator's margin" in h["detail"]
            for h in _history(mesh, rid)
        )
    ]


@pytest.fixture
def short_deadlines(mesh: Mesh) -> Iterator[None]:
    """The orchestrator restarted with short tool deadlines, for one case."""
    _restart(
        mesh,
        "orchestrator",
        PACTMESH_ORCHESTRATOR_TOOL_TIMEOUT_S=str(TOOL_TIMEOUT_S),
        PACTMESH_ORCHESTRATOR_TOOL_DEADLINE_MARGIN_S=str(DEADLINE_MARGIN_S),
        PACTMESH_ORCHESTRATOR_SWEEP_INTERVAL_S="1",
    )
    yield
    _restart(mesh, "orchestrator")


@pytest.mark.timeout(420)
@pytest.mark.usefixtures("short_deadlines")
def test_tool_calls_never_answered(mesh: Mesh) -> None:
    poll(lambda: _all_ready(mesh), timeout=120, interval=0.5, what="every service ready")
    tools = mesh.processes["tools"]

    def halt() -> None:
        for backend in ("erp", "procurement"):
            fault(mesh, backend, timeout_rate=1.0)
        os.kill(tools.pid, signal.SIGSTOP)  # no answer of any kind, not even a timeout

    def resume() -> None:
        fault(mesh, "erp", latency_ms=150)
        fault(mesh, "procurement")
        os.kill(tools.pid, signal.SIGCONT)

    dead_before = len(_dead_letters(mesh))
    with down(halt, resume, for_s=TOOL_DEADLINE_S + 12) as timing:
        # submitted once the tools are frozen: every order's first call goes unanswered
        case = Case("tool calls never answered", _orders(mesh, 10, requested=True), dead_before)
        case.timing = timing
        _in_flight(mesh, case)
        first = poll(
            lambda: _past_deadline(mesh, case.ids),
            timeout=TOOL_DEADLINE_S + 10,
            interval=0.5,
            what="a deadline passing",
        )
        print(f"\nwith the tools frozen, {len(first)} runs past a deadline so far")
    _finish(mesh, case)
    recovered = _past_deadline(mesh, case.ids)
    retried = sum(
        any(
            h["step"].endswith("_retry") and h["event"] == "tool_completed"
            for h in _history(mesh, r)
        )
        for r in recovered
    )
    print(f"\n{case.name}: {len(recovered)} runs took their recovery path, {retried} by a retry")
    assert retried == len(recovered) > 0


def _restart(mesh: Mesh, service: str, **env: str) -> None:
    """Stop ``service`` and start it again, with ``env`` added (a test hook) if given."""
    mesh.stop(service)
    saved = dict(mesh.extra_env)
    mesh.extra_env.update(env)
    try:
        mesh.start(service)
    finally:
        mesh.extra_env.clear()
        mesh.extra_env.update(saved)
    poll(lambda: mesh.ready(service), timeout=120, interval=0.5, what=f"{service} ready")


def _large_orders(mesh: Mesh, count: int) -> list[uuid.UUID]:
    """Purchase orders over the approval threshold: each waits for a manager."""
    return [
        submit(
            mesh,
            f"Please raise a purchase order for {n + 40} chairs from Acme, "
            f"${(n + 40) * 500} in total",
            "procurement",
        )
        for n in range(count)
    ]


@pytest.mark.timeout(420)
def test_hitl_killed_between_a_decisions_commit_and_its_publish(mesh: Mesh) -> None:
    gated = _large_orders(mesh, 5)
    found = [pending_review(mesh, rid, timeout=120) for rid in gated]
    _restart(mesh, "hitl", PACTMESH_HITL_TEST_EXIT_BEFORE_PUBLISH="true")
    case = _start(mesh, "hitl killed between commit and publish", orders=10, requested=True)
    case.orders += gated
    case.timing = Timing(started=time.monotonic())
    with pytest.raises(httpx.HTTPError):  # the process is gone before it answers
        decide(mesh, found[0]["review_id"], "approve", roles=["procurement-manager"])
    hitl = mesh.processes["hitl"]
    poll(lambda: hitl.poll() is not None, timeout=30, interval=0.2, what="hitl gone")
    assert hitl.returncode == 128 + signal.SIGKILL
    case.timing.down_s = time.monotonic() - case.timing.started
    _restart(mesh, "hitl")
    case.timing.ended = time.monotonic()
    for review in found[1:]:
        assert decide(
            mesh, review["review_id"], "approve", roles=["procurement-manager"]
        ).is_success
    _finish(mesh, case)
    first = [h["event"] for h in _history(mesh, gated[0]) if h["step"] == "commit_order"]
    assert first == ["tool_completed"], "the decision committed before the kill went through"


def _keyed(mesh: Mesh, text: str, key: str) -> uuid.UUID:
    response = httpx.post(
        f"{mesh.url('intake')}/v1/requests",
        json={"text": text, "requested_workflow": "procurement"},
        headers={
            **requester(mesh, scopes=("workflow:procurement",)),
            "Idempotency-Key": key,
        },
        timeout=10,
    )
    assert response.status_code in (200, 202), response.text
    return uuid.UUID(response.json()["request_id"])


def _accepted_records(mesh: Mesh, ids: list[uuid.UUID], at_least: int) -> Counter[str]:
    """Records on the accepted topic per (workflow id, event id) of ``ids``."""
    seen = Counter[str]()
    wanted = {str(rid) for rid in ids}

    def count(record: Any) -> None:
        event = json.loads(record.value)
        if event["workflow_id"] in wanted:
            seen[f"{event['workflow_id']}/{event['event_id']}"] += 1

    asyncio.run(
        read_from_start(
            mesh,
            [REQUESTS_ACCEPTED.qualified(mesh.prefix)],
            on_record=count,
            done=lambda: sum(seen.values()) >= at_least,
            deadline_s=90,
            linger_s=2.0,
        )
    )
    return seen


@pytest.mark.timeout(420)
def test_intake_publishes_whose_acknowledgement_times_out(mesh: Mesh) -> None:
    lost = 5
    _restart(mesh, "intake", PACTMESH_INTAKE_TEST_LOST_ACKS=str(lost))
    fault(mesh, "erp", latency_ms=150)
    poll(lambda: _all_ready(mesh), timeout=120, interval=0.5, what="every service ready")
    texts = {
        f"acks-{uuid.uuid4().hex[:8]}": f"Please raise a purchase order for {n % 9 + 1} chairs"
        f" from Acme, ${(n % 9 + 1) * 100} in total"
        for n in range(10)
    }
    timing = Timing(started=time.monotonic())
    ids = [_keyed(mesh, text, key) for key, text in texts.items()]
    timing.ended = time.monotonic()
    timing.down_s = timing.ended - timing.started
    case = Case("intake acknowledgements lost", ids, len(_dead_letters(mesh)), timing=timing)
    again = [_keyed(mesh, text, key) for key, text in texts.items()]  # the client retries
    assert again == ids, "an Idempotency-Key answers its first request, never a new one"
    records = _accepted_records(mesh, ids, at_least=len(ids) + lost)  # the relay's copies
    assert {key.split("/")[0] for key in records} == {str(rid) for rid in ids}
    assert len(records) == len(ids), "one event id per request, however often published"
    print(
        f"\n{case.name}: {len(ids)} requests, {lost} acks lost; accepted records "
        f"{sum(records.values())} ({sum(n - 1 for n in records.values())} republished, "
        "same event id)"
    )
    _finish(mesh, case)
    _restart(mesh, "intake")
