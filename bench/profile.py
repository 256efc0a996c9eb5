"""`make bench-profile`: where each service's CPU goes during a zero-latency phase.

Runs BENCH_PROFILE_WORKFLOWS (default 1000) support-triage workflows on a fresh mesh in
its default configuration (the bench's fast phase) with py-spy (from PyPI, run by
``uvx``) sampling each service at BENCH_PROFILE_RATE per second (default 50) while the
workflows run, then splits each process's CPU per workflow by component. Writes
bench-results/profile.json and prints the tables (docs/benchmarks.md quotes them).

A sample is given to a component in two passes over its stack. First the components
that own everything below them: checkpointing (LangGraph's checkpoint savers, the
orchestrator's SQLite store, sqlite3), tracing export (OpenTelemetry), HTTP to tools
(httpx, httpcore) and the Kafka client (aiokafka), in that order, wherever they are on
the stack. Otherwise the innermost frame of a known library decides: pydantic,
serialization (json, orjson, msgpack), the LangGraph engine (langgraph, langchain), the
FastStream framework, the event loop (asyncio, uvloop), logging, pactmesh's own code.
py-spy samples only threads holding the CPU (no ``--idle``), so a share is of busy time.
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
OWNING: Rules = (
    ("checkpointing", ("langgraph/checkpoint", "sqlite_store", "sqlite3/", "checkpointer")),
    ("tracing export", ("opentelemetry/",)),
    ("HTTP to tools", ("httpx/", "httpcore/")),
    ("Kafka client", ("aiokafka/", "kafka/")),
)
INNERMOST: Rules = (
    ("pydantic", ("pydantic/", "pydantic_core/")),
    ("serialization", ("json/", "orjson", "msgpack")),
    ("LangGraph engine", ("langgraph/", "langchain_core/", "langchain/")),
    ("FastStream", ("faststream/",)),
    ("event loop", ("asyncio/", "uvloop", "selectors.py")),
    ("logging", ("logging/",)),
    ("pactmesh", ("pactmesh_",)),
)


def component(frames: list[str]) -> str:
    """The component a sampled stack (outermost frame first) is charged to."""
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
        if stack and count.isdigit():
            counts[component(stack.split(";"))] += int(count)
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


def per_workflow(result: dict[str, Any], out: Path) -> dict[str, dict[str, float]]:
    """CPU ms per workflow by process and component."""
    completed = result["completed"] or 1
    table = {}
    for name, cpu_s in result["cpu_s_by_process"].items():
        raw = out / f"{name}.txt"
        if raw.exists():
            ms = cpu_s * 1000 / completed
            table[name] = {c: round(ms * share, 2) for c, share in shares(raw).items()}
    return table


def markdown(result: dict[str, Any], table: dict[str, dict[str, float]]) -> str:
    """Per process: CPU ms per workflow, then the components over 0.1 ms."""
    completed = result["completed"] or 1
    lines = ["| process | CPU ms / workflow | by component (ms / workflow) |", "|---|---|---|"]
    for name, parts in table.items():
        total = round(result["cpu_s_by_process"][name] * 1000 / completed, 1)
        shown = ", ".join(f"{c} {ms}" for c, ms in parts.items() if ms >= 0.1)
        lines.append(f"| {name} | {total} | {shown} |")
    overall: Counter[str] = Counter()
    for parts in table.values():
        overall.update(parts)
    lines.append(
        "| all services | "
        + str(round(sum(overall.values()), 1))
        + " | "
        + ", ".join(f"{c} {round(ms, 1)}" for c, ms in overall.most_common() if ms >= 0.1)
        + " |"
    )
    return "\n".join(lines)


def main() -> int:
    workflows = int(os.environ.get("BENCH_PROFILE_WORKFLOWS", "1000"))
    # BENCH_AB_ENV (JSON): settings of the profiled mesh, to profile before and after a lever.
    phase = Phase("profile", workflows, 0, json.loads(os.environ.get("BENCH_AB_ENV", "{}")))
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
    table = per_workflow(result, out)
    print(f"raw profiles in {out}")
    summary = {k: v for k, v in result.items() if not isinstance(v, dict)}
    report = {"phase": summary, "cpu_ms_per_workflow_by_component": table}
    target = REPO / "bench-results" / "profile.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(report, indent=2))
    print(json.dumps(summary))
    print(markdown(result, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
