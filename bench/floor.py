"""The floor of a workflow's CPU in this stack: what one record costs to publish and to
consume through the kit on the real broker before any service does anything with it,
and what LangGraph costs to run the peer's own three-node graph in-process.

A workflow of the bench's support-triage phase sends some 20 records through Kafka and
its services handle some 24 (docs/benchmarks.md, "Records per workflow"). This measures
the floor of each: a publisher process builds and publishes ``HOP_RECORDS`` routed
requests with the kit's ``EventPublisher`` (pipelined, as the services do), and a
consumer process handles them with a kit subscriber whose handler does nothing. Both
are set up as a service is (``setup_telemetry``: tracing on, spans to a local file, as
shipped; the kit's metrics; the services' event loop and garbage collector settings).
CPU per record is each process's CPU from its first record to its last (start-up and
shutdown left out).

The graph is the peer's (``../shared/peers/graph.py``, which ``make bench-compare``
serves with the LangGraph Agent Server) with its sleeps set to zero, ``FLOOR_RUNS``
(default 500) runs at once on the services' event loop, the median of three rounds,
without a checkpointer and with LangGraph's in-memory one: LangGraph's own cost for the
smallest graph that calls a model, a tool and answers, with no durability.

``uv run --no-sync python bench/floor.py`` prints the figures: the hop with spans, and
without any recorded (``OTEL_TRACES_SAMPLER=always_off``, as for the records of the
untraced topics, which carry only the trace context); ``HOP_RECORDS`` (default 20000)
records each, ``HOP_KAFKA_PORT`` (default 19592) the local broker's port.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from opentelemetry.sdk.trace import TracerProvider
from pactmesh_kit.kafka import Kafka
from pactmesh_kit.settings import KitSettings

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
PEER_GRAPH = Path(os.environ.get("BENCH_PEER_GRAPH", REPO.parent / "shared" / "peers" / "graph.py"))


def _settings(prefix: str, service: str, data_dir: Path) -> KitSettings:
    os.environ["PACTMESH_TOPIC_PREFIX"] = prefix
    os.environ["PACTMESH_DATA_DIR"] = str(data_dir)
    return KitSettings(service_name=service)


def _service(settings: KitSettings) -> tuple[Kafka, TracerProvider]:
    from pactmesh_kit import collector
    from pactmesh_kit.metrics import Metrics
    from pactmesh_kit.telemetry import setup_telemetry

    collector.configure(settings.gc_thresholds)
    provider = setup_telemetry(settings)
    return Kafka(settings, tracer_provider=provider, meter=Metrics(settings).meter), provider


async def _consume(settings: KitSettings, n: int) -> dict[str, float]:
    from pactmesh_contracts.topics import REQUESTS_ROUTED

    kafka, provider = _service(settings)
    seen: list[float] = []
    done = asyncio.Event()

    @kafka.subscriber(REQUESTS_ROUTED)
    async def on_routed(event: Any, record: Any) -> None:
        seen.append(time.process_time())
        if len(seen) >= n:
            done.set()

    await kafka.broker.start()
    print("ready", flush=True)
    try:
        await asyncio.wait_for(done.wait(), timeout=300)
    finally:
        await kafka.broker.stop()
        provider.shutdown()
    return {"cpu_us_per_record": (seen[-1] - seen[0]) * 1e6 / (len(seen) - 1)}


async def _publish(settings: KitSettings, n: int) -> dict[str, float]:
    from pactmesh_contracts.envelope import Principal, new_event
    from pactmesh_contracts.events import RequestRouted
    from pactmesh_contracts.ids import uuid7
    from pactmesh_contracts.topics import REQUESTS_ROUTED

    kafka, provider = _service(settings)
    publisher = kafka.publisher(REQUESTS_ROUTED)
    principal = Principal(subject="system:bench", roles=("upstream-system",))
    await kafka.broker.start()
    try:
        started = time.process_time()
        for start in range(0, n, 500):
            events = [
                new_event(
                    RequestRouted(
                        workflow="support-triage",
                        confidence=0.9,
                        reason="keywords: password",
                        text="How do I reset my password?",
                    ),
                    workflow_id=uuid7(),
                    tenant="bench",
                    principal=principal,
                )
                for _ in range(start, min(n, start + 500))
            ]
            await publisher.publish_all(events)
        cpu = time.process_time() - started
    finally:
        await kafka.broker.stop()
        provider.shutdown()
    return {"cpu_us_per_record": cpu * 1e6 / n}


def _role(role: str, prefix: str, n: int, data_dir: Path) -> None:
    """Run one side in this process (a child of ``main``) and print its figures."""
    settings = _settings(prefix, f"hop-{role}", data_dir)
    run = _consume if role == "consume" else _publish
    print(json.dumps(_on_services_loop(run(settings, n), settings)), flush=True)


def _on_services_loop(main: Coroutine[Any, Any, T], settings: KitSettings) -> T:
    """Run ``main`` on the event loop the services run on (``PACTMESH_EVENT_LOOP``)."""
    if settings.event_loop == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


async def _create_topic(bootstrap: str, prefix: str) -> None:
    """The hop's topic, created as ``pactmesh-topics`` creates the mesh's."""
    from pactmesh_contracts.topics import REQUESTS_ROUTED
    from pactmesh_kit.bootstrap import admin_client, ensure_topics
    from pactmesh_kit.settings import TopicSettings

    settings = TopicSettings(kafka_bootstrap_servers=bootstrap, topic_prefix=prefix)
    async with admin_client(settings) as admin:
        await ensure_topics(admin, settings, topics=(REQUESTS_ROUTED,))


def _graph_ms_per_run(runs: int, *, checkpointed: bool) -> float:
    """CPU ms per run of the peer's graph, ``runs`` at once (the median of three rounds)."""
    from langgraph.checkpoint.memory import InMemorySaver

    os.environ["LLM_S"] = os.environ["TOOL_S"] = "0"  # the graph's sleeps, read per call
    spec = importlib.util.spec_from_file_location("peer_graph", PEER_GRAPH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    graph = module.build_graph(checkpointer=InMemorySaver() if checkpointed else None)

    async def one(thread: int) -> None:
        config: Any = {"configurable": {"thread_id": str(thread)}} if checkpointed else None
        async for _ in graph.astream({"text": "I want a refund"}, config, stream_mode="updates"):
            pass

    async def rounds() -> list[float]:
        await asyncio.gather(*(one(-1 - i) for i in range(100)))  # warm-up
        figures = []
        for r in range(3):
            started = time.process_time()
            await asyncio.gather(*(one(r * runs + i) for i in range(runs)))
            figures.append((time.process_time() - started) * 1000 / runs)
        return figures

    return statistics.median(_on_services_loop(rounds(), KitSettings()))


def _hop(bootstrap: str, n: int, *, traced: bool) -> tuple[float, float]:
    """CPU µs per record to publish and to consume ``n`` records, each side in a process
    of its own, on a topic of its own."""
    prefix = f"hop{uuid.uuid4().hex[:8]}."
    asyncio.run(_create_topic(bootstrap, prefix))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    if not traced:
        env["OTEL_TRACES_SAMPLER"] = "always_off"
    with tempfile.TemporaryDirectory(prefix="bench-hop-") as tmp:
        argv = [sys.executable, __file__]
        consumer = subprocess.Popen(
            [*argv, "consume", prefix, str(n), tmp], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            assert consumer.stdout is not None
            if consumer.stdout.readline().strip() != "ready":
                raise RuntimeError("the consumer did not start")
            published = subprocess.run(
                [*argv, "publish", prefix, str(n), tmp],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
                timeout=300,
                env=env,
            )
            consumed, _ = consumer.communicate(timeout=300)
        finally:
            if consumer.poll() is None:
                consumer.kill()
                consumer.wait()
    publish = json.loads(published.stdout.strip().splitlines()[-1])["cpu_us_per_record"]
    consume = json.loads(consumed.strip().splitlines()[-1])["cpu_us_per_record"]
    return publish, consume


def main() -> int:
    from pactmesh_harness.mesh import start_broker

    n = int(os.environ.get("HOP_RECORDS", "20000"))
    port = int(os.environ.get("HOP_KAFKA_PORT", "19592"))
    runs = int(os.environ.get("FLOOR_RUNS", "500"))
    broker = start_broker(REPO / ".cache", name="kafka-hop", port=port)
    try:
        hops = {traced: _hop(broker.bootstrap, n, traced=traced) for traced in (True, False)}
    finally:
        broker.stop()
    for traced, (publish, consume) in hops.items():
        print(
            f"hop: {n} routed requests, {'spans' if traced else 'no spans'}: publish "
            f"{publish:.0f} + consume {consume:.0f} CPU µs per record"
        )
    if not PEER_GRAPH.exists():
        print(f"graph: {PEER_GRAPH} not found, not measured")
        return 0
    bare = _graph_ms_per_run(runs, checkpointed=False)
    saved = _graph_ms_per_run(runs, checkpointed=True)
    print(
        f"graph: the peer's graph, {runs} runs at once: {bare:.2f} CPU ms per run without"
        f" a checkpointer, {saved:.2f} with LangGraph's in-memory one"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5:
        _role(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit(main())
