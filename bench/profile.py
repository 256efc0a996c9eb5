"""`make bench-profile`: where each service's CPU goes during a zero-latency phase.

Runs BENCH_PROFILE_WORKFLOWS (default 1000) support-triage workflows on a fresh mesh in
its default configuration (the bench's fast phase) with py-spy (from PyPI, run by
``uvx``) sampling each service at BENCH_PROFILE_RATE per second (default 50) while the
workflows run (with BENCH_PROFILE_MODEL_MS, drafting goes through the model simulator and
langchain-openai, as in bench-compare's m phase), then gives each process's CPU per
workflow and how its busy samples split by component. Writes bench-results/profile.json
and prints the tables (docs/benchmarks.md quotes them).

A sample is given to a component in two passes over its stack. First the components
that own everything below them: checkpointing (LangGraph's checkpoint savers, the
orchestrator's SQLite store, sqlite3), tracing export (OpenTelemetry), HTTP to tools
(httpx, httpcore) and the Kafka client (aiokafka), in that order, wherever they are on
the stack. Otherwise the innermost frame of a known library decides: pydantic,
serialization (json, orjson, msgpack), the LangGraph engine (langgraph, langchain), the
FastStream framework, the event loop (asyncio, uvloop), logging, pactmesh's own code.
py-spy is asked for busy threads only (no ``--idle``), but under a heavy load it reports
threads waiting on a queue or a condition too: those leaves (``IDLE``) are left out, and
so is uvloop's native code (``NATIVE_LOOP``). A share is of the remaining (busy Python)
samples; each process's CPU per workflow comes from /proc.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pactmesh_harness.mesh import REPO, SERVICES, Mesh, start_broker

from workflows import Phase, run_phase

Rules = tuple[tuple[str, tuple[str, ...]], ...]
IDLE = (
    "Condition.wait (threading.py",
    "select (selectors.py",
    "_worker (concurrent/futures/thread.py:81)",
    "_connection_worker_thread (aiosqlite/core.py:59)",
    # Any line: its own samples are its wait on the job queue (the calls it makes are
    # frames of their own). A line number here went stale once and charged that wait to
    # SQLite (3.1% of the orchestrator's samples at 08:51 on 2026-12-07).
    "GroupCommitter._work (pactmesh_orchestrator/adapters/sqlite_store.py:",
)
"""Leaf frames of a thread waiting for work (a queue or a condition): py-spy under a heavy
load reports some of them as active, so they are left out of the shares."""
NATIVE_LOOP = "Runner.run (asyncio/runners.py"
"""The leaf of uvloop's own (native) code: its waits for I/O, which py-spy reported as
active far beyond the process's CPU time (hitl: 29 s of samples for 4.6 s of CPU), and
its loop overhead, which cannot be told apart here: left out too."""
OWNING: Rules = (
    ("checkpoints and stores (SQLite)", ("langgraph/checkpoint", "sqlite_store", "sqlite3/")),
    ("checkpoints and stores (SQLite)", ("aiosqlite/", "sqlalchemy/", "alembic/")),
    ("tracing export", ("opentelemetry/", "pactmesh_kit/telemetry", "_internal/tracing")),
    ("HTTP to tools", ("httpx/", "httpcore/", "h11/")),
    ("Kafka client", ("(aiokafka/", "(kafka/")),
)
INNERMOST: Rules = (
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("serialization", ("json/", "orjson", "msgpack")),
    # The orchestrator's ``async for`` over ``graph.astream`` is where LangGraph's stream
    # machinery shows when its own frames are native (futures, queues).
    ("LangGraph engine", ("langgraph/", "langchain_core/", "langchain/", "Engine._run (")),
    ("FastStream", ("faststream/",)),
    ("event loop", ("asyncio/", "uvloop", "selectors.py")),
    ("logging", ("logging/",)),
    ("pactmesh", ("pactmesh_",)),
)


def component(frames: list[str]) -> str | None:
    """The component a sampled stack (outermost frame first) is charged to (None: idle)."""
    if any(frames[-1].startswith(idle) for idle in IDLE):
        return None
    if frames[-1].startswith(NATIVE_LOOP):
        return None
    for name, marks in OWNING:
        if any(mark in frame for frame in frames for mark in marks):
            return name
    for frame in reversed(frames):
        for name, marks in INNERMOST:
            if any(mark in frame for mark in marks):
                return name
    return "other"


def shares(raw: Path) -> dict[str, float]:
    """Each component's share of a py-spy ``--format raw`` profile (collapsed stacks)."""
    counts: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        charged = component(stack.split(";")) if stack and count.isdigit() else None
        if charged is not None:
            counts[charged] += int(count)
    total = sum(counts.values()) or 1
    return {name: n / total for name, n in counts.most_common()}


@contextmanager
def sampled(mesh: Mesh, out: Path, rate: int) -> Iterator[None]:
    """py-spy recording every service of ``mesh`` until the block ends (SIGINT: py-spy
    then writes its profile)."""
    record = ["uvx", "py-spy==0.4.3", "record", "--rate", str(rate), "--format", "raw"]
    spies = [
        subprocess.Popen(
            [*record, "--nonblocking", "--pid", str(process.pid), "-o", str(out / f"{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, process in mesh.processes.items()
        if name in SERVICES
    ]
    time.sleep(2)  # py-spy attaches
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(60)


def split(result: dict[str, Any], out: Path) -> dict[str, dict[str, float]]:
    """Per process: each component's share (percent) of its busy Python samples."""
    table = {}
    for name in result["cpu_s_by_process"]:
        raw = out / f"{name}.txt"
        if raw.exists():
            table[name] = {c: round(100 * share, 1) for c, share in shares(raw).items()}
    return table


def markdown(result: dict[str, Any], table: dict[str, dict[str, float]]) -> str:
    """Per process: CPU ms per workflow (from /proc), then the components' shares."""
    completed = result["completed"] or 1
    lines = [
        "| process | CPU ms / workflow | busy Python samples by component (%) |",
        "|---|---|---|",
    ]
    for name, parts in table.items():
        total = round(result["cpu_s_by_process"][name] * 1000 / completed, 1)
        shown = ", ".join(f"{c} {pct}" for c, pct in parts.items() if pct >= 1)
        lines.append(f"| {name} | {total} | {shown} |")
    return "\n".join(lines)


def main() -> int:
    workflows = int(os.environ.get("BENCH_PROFILE_WORKFLOWS", "1000"))
    # BENCH_AB_ENV (JSON): settings of the profiled mesh, to profile before and after a lever.
    phase = Phase("profile", workflows, 0, json.loads(os.environ.get("BENCH_AB_ENV", "{}")))
    # BENCH_PROFILE_MODEL_MS: drafting through the model simulator and langchain-openai
    # (bench-compare's m phase), its answers this many ms late.
    phase.model_latency_ms = int(os.environ.get("BENCH_PROFILE_MODEL_MS", "0"))
    rate = int(os.environ.get("BENCH_PROFILE_RATE", "50"))
    port = int(os.environ.get("BENCH_KAFKA_PORT", "19192"))
    broker = start_broker(REPO / ".cache", name="kafka-bench", port=port)
    # The raw profiles stay (git-ignored) for a closer look: py-spy's collapsed stacks.
    out = REPO / ".cache" / "profile" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    try:
        result = run_phase(broker, phase, 300, around=lambda m: sampled(m, out, rate))
    finally:
        broker.stop()
    table = split(result, out)
    print(f"raw profiles in {out}")
    summary = {k: v for k, v in result.items() if not isinstance(v, dict)}
    report = {
        "phase": summary,
        "cpu_s_by_process": result["cpu_s_by_process"],
        "share_of_busy_samples_by_component": table,
        "raw_profiles": str(out),
    }
    target = REPO / "bench-results" / "profile.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(report, indent=2))
    print(json.dumps(summary))
    print(markdown(result, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
