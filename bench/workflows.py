"""`make bench`: workflows through the whole mesh on a real broker, bounded in count
and time. Prints the figures, writes them to bench-results/workflows.json and into the
generated section of docs/benchmarks.md.

Phases, each on a fresh mesh:
  slow  -- every knowledge-base call takes BENCH_LATENCY_MS (default 2000 ms) in the
           sandbox; BENCH_SLOW_WORKFLOWS (default 10,000) support-triage requests are
           published at once: how many are in flight together (started by the
           orchestrator and not finished), end-to-end p50/p99, each process's peak memory.
           Only tool latency is simulated: support triage drafts its reply with the
           offline model, which answers at once (its tokens are streamed all the same).
  fast  -- no injected latency; BENCH_FAST_WORKFLOWS (default 2,000) requests: sustained
           workflows per second and CPU milliseconds per workflow (all processes).
  scaled -- the fast phase's workload (BENCH_SCALED_WORKFLOWS, default the fast phase's
           count) on two instances of each of the six services sharing their state in
           Postgres (intake's rate limits in Redis), as pactmesh_harness.scaled starts
           them for the scale tests, on the same single broker: the same figures beside
           the fast phase's single instances on SQLite. Its CPU counts both instances of
           every service and the private Postgres's postmaster with all its backends
           (and redis-server): SQLite's work is inside the services' own processes.
Each phase stops at BENCH_DEADLINE_S (default 600 s) and reports what completed. Before
its workflows, each phase reads its ready mesh's CPU for BENCH_IDLE_S (default 10 s, 0
skips it) with no work: the CPU per second it spends whatever the load.
BENCH_PHASES (default ``fast,scaled,slow``) picks the phases (``bare`` is the fast phase with
tracing and metrics off: ``BENCH_PHASES=fast,bare`` measures what they cost; ``ab`` is
the fast phase with the settings in BENCH_AB_ENV, a JSON object: ``BENCH_PHASES=ab,fast``
``BENCH_AB_ENV='{"PACTMESH_EVENT_LOOP": "asyncio"}'`` measures a lever; phases run in
the order given);
BENCH_KAFKA_PORT (default 19192, controller on the next port) moves the bench's own
broker off other brokers' ports;
BENCH_KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SASL_PLAINTEXT) runs it secured: every service
authenticating as itself with SCRAM-SHA-512, the broker checking ACLs.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pactmesh_contracts.envelope import Principal, new_event
from pactmesh_contracts.events import RequestSubmitted
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.topics import (
    REQUESTS_INBOUND,
    WORKFLOW_PROGRESS,
)
from pactmesh_harness.mesh import (
    MODEL_SIM,
    REPO,
    SERVICES,
    UPSTREAM,
    Broker,
    Mesh,
    running_mesh,
    start_broker,
)
from pactmesh_harness.procstat import by_service, cpu_s, tree_cpu_s
from pactmesh_harness.scaled import TWO_OF_EACH, running_scaled_mesh, shared_state
from pactmesh_kit.auth.records import authorization
from pactmesh_workflows.registry import registry

QUESTIONS = (
    "How do I reset my password?",
    "Where is my order? I want to track it",
    "How do I cancel my subscription plan?",
    "How can I update my billing details?",
)


@dataclass
class Phase:
    name: str
    workflows: int
    latency_ms: int
    env: dict[str, str] = field(default_factory=dict)
    """Settings of this phase's mesh besides the bench's own."""
    instances: Mapping[str, int] = field(default_factory=dict)
    """Instances of each service beyond one; with any, the state is in Postgres (and
    intake's rate limits in Redis), started for the phase."""
    sent_at: dict[uuid.UUID, float] = field(default_factory=dict)
    started_at: dict[uuid.UUID, float] = field(default_factory=dict)
    """When the orchestrator started each workflow (its ``running`` progress event)."""
    done_at: dict[uuid.UUID, float] = field(default_factory=dict)
    max_in_flight: int = 0
    started: float = 0.0
    model_latency_ms: int = 0
    """When set, drafting asks the model simulator (through langchain-openai, as a
    provider would be asked), which takes this long before its first token."""


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _publish(mesh: Mesh, phase: Phase) -> None:
    # As an upstream system would (on a secured cluster: the upstream principal's ACLs).
    producer = AIOKafkaProducer(
        **mesh.kafka_options(UPSTREAM), acks="all", enable_idempotence=True, linger_ms=5
    )
    await producer.start()
    principal = Principal(
        subject="system:bench", roles=("upstream-system",), scopes=("workflow:support-triage",)
    )
    topic = REQUESTS_INBOUND.qualified(mesh.prefix)
    # One token for the run, as an upstream holds one until it expires (intake verifies
    # its signature once and remembers it).
    token = mesh.token(tenant="bench", principal=principal)
    headers = [("content-type", b"application/json"), authorization(token)]
    try:
        pending = []
        for i in range(phase.workflows):
            event = new_event(
                RequestSubmitted(
                    text=QUESTIONS[i % len(QUESTIONS)], requested_workflow="support-triage"
                ),
                workflow_id=uuid7(),
                tenant="bench",
                principal=principal,
            )
            phase.sent_at[event.workflow_id] = time.monotonic()
            pending.append(
                await producer.send(
                    topic, event.model_dump_json().encode(), key=event.key, headers=headers
                )
            )
            if len(pending) >= 500:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _collect(mesh: Mesh, phase: Phase, deadline: float) -> None:
    """Read results and progress: a workflow is in flight from the orchestrator's
    ``running`` event until its result, so queued requests do not count."""
    progress = WORKFLOW_PROGRESS.qualified(mesh.prefix)
    consumer = AIOKafkaConsumer(
        progress,
        *(t.qualified(mesh.prefix) for t in registry().result_topics()),
        **mesh.kafka_options(),
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_poll_records=2000,
    )
    await consumer.start()
    try:
        while len(phase.done_at) < phase.workflows and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                now = time.monotonic()
                for record in records:
                    event = json.loads(record.value)
                    workflow_id = uuid.UUID(event["workflow_id"])
                    if record.topic != progress:
                        phase.done_at.setdefault(workflow_id, now)
                    elif event["payload"].get("status") == "running":
                        phase.started_at.setdefault(workflow_id, now)
            in_flight = len(phase.started_at.keys() - phase.done_at.keys())
            phase.max_in_flight = max(phase.max_in_flight, in_flight)
    finally:
        await consumer.stop()


async def _records_by_topic(mesh: Mesh) -> dict[str, int]:
    """How many offsets each of the mesh's topics took (every partition's end offset,
    summed): its records, and on the transactional ones (delivery's result topics) one
    commit marker per transaction besides."""
    admin = AIOKafkaAdminClient(**mesh.kafka_options())
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(mesh.prefix)]
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    tps = [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]
    consumer = AIOKafkaConsumer(**mesh.kafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    records: dict[str, int] = defaultdict(int)
    for tp, end in ends.items():
        records[tp.topic.removeprefix(mesh.prefix)] += end
    return dict(sorted(records.items(), key=lambda kv: -kv[1]))


def _span_summary(mesh: Mesh) -> dict[str, dict[str, float]]:
    """Mean and total span time per service and span name: where the time goes."""
    durations: dict[tuple[str, str], list[float]] = defaultdict(list)
    for span in mesh.spans():
        service = span["resource"]["attributes"]["service.name"]
        name = span["name"].replace(mesh.prefix, "")
        durations[(service, name)].append((span["end_time"] - span["start_time"]) / 1e6)
    rows = {
        f"{service} {name}": {
            "count": len(d),
            "mean_ms": round(statistics.fmean(d), 2),
            "total_s": round(sum(d) / 1000, 1),
        }
        for (service, name), d in durations.items()
    }
    return dict(sorted(rows.items(), key=lambda kv: -kv[1]["total_s"])[:15])


def _model_env(phase: Phase) -> dict[str, str]:
    """Drafting on the simulator, its budget well above its latency (no fallback taken)."""
    if not phase.model_latency_ms:
        return {}
    primary = {
        "model": "openai:sim-draft",
        "base_url": "{model_sim_url}/v1",
        "api_key": "sk-simulator",
        "latency_budget_s": 60,
    }
    drafting = {"primary": primary, "fallbacks": [{"model": "pactmesh-offline:default"}]}
    return {"PACTMESH_MODELS_JSON": json.dumps({"drafting": drafting})}


def _inject_latency(mesh: Mesh, phase: Phase) -> None:
    if phase.latency_ms:
        httpx.put(
            f"{mesh.sandbox_url}/faults/kb", json={"latency_ms": phase.latency_ms}, timeout=10
        )
    if phase.model_latency_ms:
        latency = {"kind": "fixed", "ms": phase.model_latency_ms}
        httpx.put(f"{mesh.url(MODEL_SIM)}/sim/config", json={"latency": latency}, timeout=10)


def _shape(instances: Mapping[str, int]) -> str:
    """How many instances of each service: ``2 of each``, else every count named."""
    counts = set(instances.values())
    if len(counts) == 1:
        return f"{counts.pop()} of each"
    return ", ".join(f"{n} {service}" for service, n in instances.items())


def run_phase(
    broker: Broker,
    phase: Phase,
    deadline_s: float,
    around: Callable[[Mesh], AbstractContextManager[object]] | None = None,
    idle_s: float = 0.0,
) -> dict[str, Any]:
    """Run ``phase`` on a fresh mesh: its figures. CPU counts every process of the mesh
    (every instance, the sandbox too) but the model simulator, which stands for a model
    provider; with several instances, the Postgres and Redis started for the phase too
    (Postgres's postmaster and every backend it forked, see ``procstat.tree_cpu_s``).
    The local broker's CPU is read over the same window and reported beside it.
    ``around(mesh)`` is entered just before the workflows are sent and left when they
    are done (a profiler attached to the mesh's processes). With ``idle_s``, the ready
    mesh's CPU is first read over that many seconds with no work: what its processes
    spend per second whatever the load (polls, heartbeats, exporters), which a phase's
    CPU per workflow includes for every second it runs."""
    env = {
        "PACTMESH_TOOLS_CONCURRENCY": "10000",
        "PACTMESH_TOOLS_MAX_IN_FLIGHT": "10000",
        "PACTMESH_ORCHESTRATOR_TOOL_TIMEOUT_S": "600",
        "PACTMESH_TOOLS_ATTEMPT_TIMEOUT_S": "600",
        "OTEL_BSP_MAX_QUEUE_SIZE": "200000",
        # The bench repeats four questions: the semantic cache would answer all but the
        # first few from memory and no workflow would wait for its tool. Off, every run
        # takes the path the targets are about: a tool call through Kafka, then drafting.
        "PACTMESH_ORCHESTRATOR_CACHE_ENABLED": "false",
    }
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-{phase.name}-")))
        env |= _model_env(phase) | phase.env
        servers: dict[str, int] = {}  # shared state's servers: CPU with their children's
        shared = ""
        if phase.instances:
            state = stack.enter_context(shared_state(REPO / ".cache"))
            servers = state.pids()
            mesh = stack.enter_context(
                running_scaled_mesh(
                    broker,
                    tmp,
                    postgres_url=state.postgres_url,
                    redis_url=state.redis_url,
                    instances=phase.instances,
                    env=env,
                    model_sim=bool(phase.model_latency_ms),
                )
            )
            store = "Postgres"
            shared = f"Postgres: {state.postgres_how}; Redis: {state.redis_how}"
        else:
            mesh = stack.enter_context(
                running_mesh(broker, tmp, env=env, model_sim=bool(phase.model_latency_ms))
            )
            store = "SQLite"
        _inject_latency(mesh, phase)
        pids = {name: p.pid for name, p in mesh.processes.items() if name != MODEL_SIM}

        def read_cpu() -> dict[str, float]:
            own = {name: cpu_s(pid) for name, pid in pids.items()}
            return own | {name: tree_cpu_s(pid) for name, pid in servers.items()}

        load = [round(x, 2) for x in os.getloadavg()]
        idle: dict[str, float] = {}
        if idle_s > 0:
            idle_from = read_cpu()
            time.sleep(idle_s)  # a measuring window, not a wait for a condition
            idle = {n: (s - idle_from[n]) * 1000 / idle_s for n, s in read_cpu().items()}
        cpu_before = read_cpu()
        broker_before = sum(cpu_s(pid) for pid in broker.pids())

        async def drive() -> None:
            deadline = time.monotonic() + deadline_s
            collector = asyncio.create_task(_collect(mesh, phase, deadline))
            phase.started = time.monotonic()
            await _publish(mesh, phase)
            await collector

        with around(mesh) if around else nullcontext():
            asyncio.run(drive())
        cpu = {name: seconds - cpu_before[name] for name, seconds in read_cpu().items()}
        broker_pids = broker.pids()
        broker_cpu = sum(cpu_s(pid) for pid in broker_pids) - broker_before
        peak = {name: round(_peak_rss_mb(pid), 1) for name, pid in pids.items()}
        spans = _span_summary(mesh)
        try:
            records = asyncio.run(_records_by_topic(mesh))
        except Exception as exc:  # a diagnostic: the phase's figures stand without it
            print(f"bench: records per topic not read: {exc!r}", flush=True)
            records = {}
    latencies = sorted(phase.done_at[w] - phase.sent_at[w] for w in phase.done_at)
    completed = len(latencies)
    elapsed = (max(phase.done_at.values()) - phase.started) if completed else 0.0

    def pick(q: float) -> int | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000)

    instances = {s: phase.instances.get(s, 1) for s in SERVICES}
    shape = _shape(instances)
    return {
        "mesh": f"{shape}, {store}",
        "instances": instances,
        "mesh_startup_s": round(mesh.startup_s, 1),
        "shared_state": shared,
        "database_cpu_included": sorted(servers),
        "load_average_at_start": load,
        "workflows": phase.workflows,
        "completed": completed,
        "injected_tool_latency_ms": phase.latency_ms,
        "max_in_flight": phase.max_in_flight,
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "elapsed_s": round(elapsed, 1),
        "workflows_per_s": round(completed / elapsed, 1) if elapsed else None,
        "cpu_ms_per_workflow": round(sum(cpu.values()) * 1000 / completed, 1)
        if completed
        else None,
        "database_cpu_ms_per_workflow": round(
            sum(cpu[name] for name in servers) * 1000 / completed, 1
        )
        if completed and servers
        else None,
        # The broker is not in the mesh's figure (a deployment's Kafka is not its
        # own, and the peer has none): reported beside it, for the local broker only.
        "broker_cpu_ms_per_workflow": round(broker_cpu * 1000 / completed, 1)
        if completed and broker_pids
        else None,
        "idle_cpu_ms_per_s": round(sum(idle.values()), 1) if idle else None,
        "cpu_s_by_process": {k: round(v, 1) for k, v in cpu.items()},
        "cpu_s_by_service": {k: round(v, 1) for k, v in by_service(cpu).items()},
        "idle_cpu_ms_per_s_by_process": {k: round(v, 1) for k, v in idle.items()},
        "peak_rss_mb_by_process": peak,
        "busiest_spans": spans,
        # What a workflow sends through Kafka, by topic: the hops its CPU pays for.
        "records_per_workflow_by_topic": {
            topic: round(count / completed, 2) for topic, count in records.items() if count
        }
        if completed
        else {},
    }


def _table(results: dict[str, Any]) -> list[str]:
    """The phases side by side, one row each (markdown)."""
    lines = [
        "| phase | mesh | workflows | completed | injected tool latency | max in flight"
        " | p50 | p99 | workflows/s | CPU ms / workflow | broker CPU ms / workflow"
        " | idle CPU ms / s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["phases"].items():
        lines.append(
            f"| {name} | {r.get('mesh', '')} | {r['workflows']} | {r['completed']} |"
            f" {r['injected_tool_latency_ms']} ms |"
            f" {r['max_in_flight']} | {r['p50_ms']} ms | {r['p99_ms']} ms |"
            f" {r['workflows_per_s']} |"
            f" {r['cpu_ms_per_workflow']} | {r.get('broker_cpu_ms_per_workflow')} |"
            f" {r.get('idle_cpu_ms_per_s')} |"
        )
    return lines


def _markdown(results: dict[str, Any]) -> str:
    lines = ["<!-- bench:begin (generated by `make bench`; do not edit by hand) -->", ""]
    load = results.get("load_average_at_start")
    lines.append(
        f"Run at {results['at']} on {os.cpu_count()} cores; broker: {results['broker']}"
        + (f"; load average at start {load[0]}, {load[1]}, {load[2]}." if load else ".")
    )
    lines.append("")
    lines += _table(results)
    for name, r in results["phases"].items():
        if r.get("database_cpu_included"):
            lines.append("")
            lines.append(
                f"The {name} phase's CPU per workflow includes its shared state's servers"
                f" ({', '.join(r['database_cpu_included'])}):"
                f" {r['database_cpu_ms_per_workflow']} ms of it;"
                f" its {r['mesh_startup_s']} s of start-up are not in its figures."
            )
    for name, r in results["phases"].items():
        lines.append("")
        lines.append(
            f"Peak RSS by process, {name} phase (MB): "
            + ", ".join(f"{k} {v}" for k, v in r["peak_rss_mb_by_process"].items())
        )
        lines.append("")
        lines.append(
            f"CPU seconds by process, {name} phase: "
            + ", ".join(f"{k} {v}" for k, v in r["cpu_s_by_process"].items())
        )
    lines += [
        "",
        "Busiest spans, fast phase (total span time):",
        "",
        "| span | count | mean ms | total s |",
        "|---|---|---|---|",
    ]
    for span, row in results["phases"].get("fast", {}).get("busiest_spans", {}).items():
        lines.append(f"| {span} | {row['count']} | {row['mean_ms']} | {row['total_s']} |")
    lines += ["", "<!-- bench:end -->"]
    return "\n".join(lines)


def main() -> int:
    slow = Phase(
        "slow",
        int(os.environ.get("BENCH_SLOW_WORKFLOWS", "10000")),
        int(os.environ.get("BENCH_LATENCY_MS", "2000")),
    )
    fast = Phase("fast", int(os.environ.get("BENCH_FAST_WORKFLOWS", "2000")), 0)
    # The fast phase without the instrumentation: no spans, no metrics (audit events and
    # token accounting stay: they are the timeline and the budgets, not instrumentation).
    bare = Phase(
        "bare",
        fast.workflows,
        0,
        {"OTEL_TRACES_SAMPLER": "always_off", "PACTMESH_METRICS_ENABLED": "false"},
    )
    # The fast phase with other settings (BENCH_AB_ENV, JSON): a lever's A/B in one run.
    ab = Phase("ab", fast.workflows, 0, json.loads(os.environ.get("BENCH_AB_ENV", "{}")))
    # The fast phase's workload on two instances of every service, their state in Postgres.
    scaled = Phase(
        "scaled",
        int(os.environ.get("BENCH_SCALED_WORKFLOWS", str(fast.workflows))),
        0,
        instances=TWO_OF_EACH,
    )
    deadline_s = float(os.environ.get("BENCH_DEADLINE_S", "600"))
    idle_s = float(os.environ.get("BENCH_IDLE_S", "10"))
    wanted = os.environ.get("BENCH_PHASES", "fast,scaled,slow").split(",")
    known = (fast, bare, ab, scaled, slow)
    phases = [p for name in wanted for p in known if p.name == name]
    port = int(os.environ.get("BENCH_KAFKA_PORT", "19192"))
    protocol = os.environ.get("BENCH_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
    broker = start_broker(
        REPO / ".cache", name="kafka-bench", port=port, security_protocol=protocol
    )
    try:
        results: dict[str, Any] = {
            "at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "broker": broker.how,
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "phases": {},
        }
        for phase in phases:
            print(f"bench: {phase.name} phase, {phase.workflows} workflows ...", flush=True)
            results["phases"][phase.name] = run_phase(broker, phase, deadline_s, idle_s=idle_s)
            figures = results["phases"][phase.name]
            summary = {k: v for k, v in figures.items() if not isinstance(v, dict)}
            print(f"bench: {phase.name}: {json.dumps(summary)}", flush=True)
    finally:
        broker.stop()
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print("\n".join(["", *_table(results), ""]), flush=True)
    out = REPO / "bench-results" / "workflows.json"
    out.parent.mkdir(exist_ok=True)
    if not {"fast", "slow"} <= {p.name for p in phases}:  # keep the published figures
        out = out.with_name("workflows-partial.json")
        out.write_text(json.dumps(results, indent=2))
        print(f"bench: partial run, figures written to {out} only")
        return 0
    out.write_text(json.dumps(results, indent=2))
    docs = REPO / "docs" / "benchmarks.md"
    text = docs.read_text()
    section = _markdown(results)
    if "<!-- bench:begin" in text:
        start, end = (
            text.index("<!-- bench:begin"),
            text.index("<!-- bench:end -->") + len("<!-- bench:end -->"),
        )
        text = text[:start] + section + text[end:]
    else:
        text = text.rstrip() + "\n\n## `make bench`: workflows end to end\n\n" + section + "\n"
    docs.write_text(text)
    print(f"bench: figures written to {out} and {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
