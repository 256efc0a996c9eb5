"""The orchestrator's engine on its own: support-triage runs driven in-process, with
the orchestrator's own SQLite checkpointer, outbox and wake-ups and the offline model,
but no broker (events are collected in memory) and no other service. CPU per workflow
(every thread of this process: the event loop and the SQLite writer), for the segment
that starts a run (up to its knowledge-base call) and the one its tool result resumes
(drafting, the end).

The mesh's profile puts half of all CPU in the orchestrator; this isolates the part of
it that is the engine (LangGraph, the checkpointer, the model stream, the events it
builds) from Kafka and tracing, with far less noise than a whole-mesh phase: an A/B of
an engine lever is two runs of this, a few seconds each.

It runs on the services' event loop (``PACTMESH_EVENT_LOOP``, uvloop by default). The
process's garbage collector is set up as a service's (``pactmesh_kit.collector``:
PACTMESH_GC_THRESHOLDS, start-up frozen after a warm-up round), and the time spent in
collections is reported with the CPU.

``uv run --no-sync python bench/engine.py`` prints the figures. ENGINE_WORKFLOWS (default
500) runs at once; ENGINE_ROUNDS (default 3) repeats, the median reported;
ENGINE_DURABILITY (default ``sync``) the checkpoint durability; ENGINE_PROFILE=FILE
writes a cProfile of one more round to FILE (the event loop's thread only).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, cast

from langgraph.types import Durability
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    RequestRouted,
    ToolCallCompleted,
    ToolCallRequested,
    WorkflowCompleted,
)
from pactmesh_contracts.topics import REQUESTS_ROUTED, TOOL_RESULTS
from pactmesh_kit import collector
from pactmesh_kit.auth import load_access_policy
from pactmesh_kit.settings import KitSettings
from pactmesh_orchestrator.adapters.sqlite_store import SqliteWakeups, open_sqlite_store
from pactmesh_orchestrator.domain.engine import Engine
from pactmesh_orchestrator.domain.workflows import build_graphs
from pactmesh_orchestrator.testing import CollectingPublisher
from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.reasoning import Reasoning
from pydantic import JsonValue

QUESTIONS = ("How do I reset my password?", "Where is my order? I want to track it")
ARTICLE: dict[str, JsonValue] = {
    "hits": [
        {
            "id": "kb-1",
            "title": "Resetting your password",
            "answer": "Use the reset link on the sign-in page; it is valid for an hour.",
            "score": 0.8,
        }
    ]
}


def _routed(i: int) -> Envelope[Any]:
    event = new_event(
        RequestRouted(
            workflow="support-triage",
            confidence=0.9,
            reason="bench",
            text=QUESTIONS[i % len(QUESTIONS)],
        ),
        workflow_id=uuid.uuid4(),
        tenant="default",
        principal=Principal(subject="system:bench", roles=("upstream-system",)),
    )
    routed: Envelope[Any] = REQUESTS_ROUTED.adapter.validate_json(event.model_dump_json())
    return routed


def _answer(call: Envelope[ToolCallRequested]) -> Envelope[Any]:
    result = ToolCallCompleted(
        call_id=call.payload.call_id, tool=call.payload.tool, result=ARTICLE, duration_ms=1
    )
    answer: Envelope[Any] = TOOL_RESULTS.adapter.validate_json(
        call.follow(result).model_dump_json()
    )
    return answer


def _profiler() -> Any:
    """A cProfile profiler. This script's directory leaves the import path first:
    bench/profile.py (``make bench-profile``) would shadow the standard library's
    ``profile``, which cProfile imports."""
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    return importlib.import_module("cProfile").Profile()


class CollectorClock:
    """Wall time spent in garbage collections (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._began


async def _round(
    engine: Engine, publisher: CollectingPublisher, n: int, clock: CollectorClock
) -> tuple[float, float, float]:
    """CPU ms per workflow of the starting and the resuming segments of ``n`` runs, and
    the ms per workflow spent collecting garbage."""
    collecting = clock.seconds
    started = [_routed(i) for i in range(n)]
    before = time.process_time()
    await asyncio.gather(*(engine.start(event) for event in started))
    start_s = time.process_time() - before
    calls = [e for e in publisher.take() if isinstance(e.payload, ToolCallRequested)]
    answers = [_answer(cast(Envelope[ToolCallRequested], call)) for call in calls]
    before = time.process_time()
    await asyncio.gather(*(engine.resume(answer) for answer in answers))
    resume_s = time.process_time() - before
    done = [e for e in publisher.take() if isinstance(e.payload, WorkflowCompleted)]
    if len(calls) != n or len(done) != n:
        raise SystemExit(f"expected {n} tool calls and results: {len(calls)}, {len(done)}")
    publisher.audits.clear()
    return start_s * 1000 / n, resume_s * 1000 / n, (clock.seconds - collecting) * 1000 / n


async def run(n: int, rounds: int, durability: Durability, profile: str | None) -> None:
    thresholds = KitSettings().gc_thresholds
    collector.configure(thresholds)
    clock = CollectorClock()
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        async with open_sqlite_store(Path(tmp) / "checkpoints.sqlite") as (saver, outbox):
            publisher = CollectingPublisher()
            engine = Engine(
                graphs=build_graphs(
                    checkpointer=saver, gates=GatePolicy.load(), models=Reasoning()
                ),
                checkpointer=saver,
                publisher=publisher,
                outbox=outbox,
                reviewers=load_access_policy(),
                tool_timeout_s=30,
                token_window_s=0.05,  # the orchestrator's default
                durability=durability,
                wakeups=SqliteWakeups(saver.committer),
            )
            await _round(engine, publisher, 10, clock)  # imports, caches, connections
            collector.ready()
            figures = [await _round(engine, publisher, n, clock) for _ in range(rounds)]
            if profile:
                profiler = _profiler()
                profiler.enable()
                await _round(engine, publisher, n, clock)
                profiler.disable()
                profiler.dump_stats(profile)
    start = statistics.median(f[0] for f in figures)
    resume = statistics.median(f[1] for f in figures)
    collecting = statistics.median(f[2] for f in figures)
    print(
        f"engine: {n} support-triage runs at once, durability {durability}, gc thresholds"
        f" {thresholds}, median of {rounds}: start {start:.2f} + resume {resume:.2f} ="
        f" {start + resume:.2f} CPU ms per workflow, {collecting:.2f} ms of it collecting"
        " garbage"
    )
    if profile:
        print(f"engine: cProfile of one more round in {profile}")


def main() -> None:
    # The services' event loop (PACTMESH_EVENT_LOOP, uvloop by default), as serve() runs
    # them: the standard library's loop wakes itself with a write to its self-pipe for
    # each item LangGraph streams (call_soon_threadsafe), which uvloop coalesces. On
    # asyncio this bench read 0.2-0.5 ms more per workflow than on uvloop.
    factory = None
    if KitSettings().event_loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(
            run(
                int(os.environ.get("ENGINE_WORKFLOWS", "500")),
                int(os.environ.get("ENGINE_ROUNDS", "3")),
                cast(Durability, os.environ.get("ENGINE_DURABILITY", "sync")),
                os.environ.get("ENGINE_PROFILE") or None,
            )
        )


if __name__ == "__main__":
    main()
