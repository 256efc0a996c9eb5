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

The same records' bytes are also sent through the bare client libraries, without the
kit, envelopes or spans: aiokafka (the kit's client) and, when it is installed,
confluent-kafka (librdkafka, in C; FastStream's other Kafka broker). Same producer
settings as the kit's (``acks=all``, idempotence, ``linger_ms``), a ``read_committed``
consumer committing each batch: what the client alone costs, and what a client in C
would save.

``uv run --no-sync python bench/floor.py`` prints the figures: the hop with spans, and
without any recorded (``OTEL_TRACES_SAMPLER=always_off``, as for the records of the
untraced topics, which carry only the trace context), then the bare clients;
``HOP_RECORDS`` (default 20000) records each, ``HOP_KAFKA_PORT`` (default 19592) the
local broker's port. confluent-kafka is not a dependency of the project: ``uv run
--no-sync --with confluent-kafka python bench/floor.py`` adds it for one run.
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


def _routed(n: int) -> list[Any]:
    """``n`` routed requests, each of a workflow of its own."""
    from pactmesh_contracts.envelope import Principal, new_event
    from pactmesh_contracts.events import RequestRouted
    from pactmesh_contracts.ids import uuid7

    principal = Principal(subject="system:bench", roles=("upstream-system",))
    return [
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
        for _ in range(n)
    ]


async def _publish(settings: KitSettings, n: int) -> dict[str, float]:
    from pactmesh_contracts.topics import REQUESTS_ROUTED

    kafka, provider = _service(settings)
    publisher = kafka.publisher(REQUESTS_ROUTED)
    await kafka.broker.start()
    try:
        started = time.process_time()
        for start in range(0, n, 500):  # built as they are published, as a service does
            await publisher.publish_all(_routed(min(n, start + 500) - start))
        cpu = time.process_time() - started
    finally:
        await kafka.broker.stop()
        provider.shutdown()
    return {"cpu_us_per_record": cpu * 1e6 / n}


def _wire_records(n: int) -> tuple[list[tuple[bytes, bytes]], list[tuple[str, bytes]]]:
    """``n`` routed requests as the kit writes them (key: the workflow id; value: JSON),
    and a record's headers."""
    records = [(str(e.workflow_id).encode(), e.model_dump_json().encode()) for e in _routed(n)]
    traceparent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    return records, [("content-type", b"application/json"), ("traceparent", traceparent)]


async def _aiokafka_publish(settings: KitSettings, topic: str, n: int) -> dict[str, float]:
    from aiokafka import AIOKafkaProducer

    records, headers = _wire_records(n)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.kafka_linger_ms,
    )
    await producer.start()
    try:
        started = time.process_time()
        for start in range(0, n, 500):
            sent = [
                await producer.send(topic, value, key=key, headers=headers)
                for key, value in records[start : start + 500]
            ]
            await asyncio.gather(*sent)
        cpu = time.process_time() - started
    finally:
        await producer.stop()
    return {"cpu_us_per_record": cpu * 1e6 / n}


async def _aiokafka_consume(settings: KitSettings, topic: str, n: int) -> dict[str, float]:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=f"{topic}.bare",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    await consumer.start()
    print("ready", flush=True)
    seen = 0
    first = last = 0.0
    try:
        while seen < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            for records in batches.values():
                for _ in records:
                    seen += 1
                    last = time.process_time()
                    first = first or last
            if batches:
                await consumer.commit()
    finally:
        await consumer.stop()
    return {"cpu_us_per_record": (last - first) * 1e6 / (seen - 1)}


def _confluent_publish(settings: KitSettings, topic: str, n: int) -> dict[str, float]:
    from confluent_kafka import Producer  # type: ignore[import-not-found,unused-ignore]

    records, headers = _wire_records(n)
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": settings.kafka_linger_ms,
        }
    )
    started = time.process_time()
    for key, value in records:
        producer.produce(topic, value, key=key, headers=headers)
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("confluent-kafka: records left unsent")
    return {"cpu_us_per_record": (time.process_time() - started) * 1e6 / n}


def _confluent_consume(settings: KitSettings, topic: str, n: int) -> dict[str, float]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{topic}.bare",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": settings.kafka_fetch_max_wait_ms,
        }
    )
    consumer.subscribe([topic])
    print("ready", flush=True)
    seen = 0
    first = last = 0.0
    try:
        while seen < n:
            records = consumer.consume(num_messages=500, timeout=1.0)
            for record in records:
                if record.error() is None:
                    seen += 1
                    last = time.process_time()
                    first = first or last
            if records:
                consumer.commit(asynchronous=True)
    finally:
        consumer.close()
    return {"cpu_us_per_record": (last - first) * 1e6 / (seen - 1)}


def _role(role: str, prefix: str, n: int, data_dir: Path) -> None:
    """Run one side in this process (a child of ``main``) and print its figures."""
    from pactmesh_contracts.topics import REQUESTS_ROUTED

    settings = _settings(prefix, f"hop-{role}", data_dir)
    topic = REQUESTS_ROUTED.qualified(prefix)
    if role == "confluent-publish":
        figures = _confluent_publish(settings, topic, n)
    elif role == "confluent-consume":
        figures = _confluent_consume(settings, topic, n)
    elif role == "aiokafka-publish":
        figures = _on_services_loop(_aiokafka_publish(settings, topic, n), settings)
    elif role == "aiokafka-consume":
        figures = _on_services_loop(_aiokafka_consume(settings, topic, n), settings)
    else:
        run = _consume if role == "consume" else _publish
        figures = _on_services_loop(run(settings, n), settings)
    print(json.dumps(figures), flush=True)


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


def _hop(bootstrap: str, n: int, *, traced: bool = True, client: str = "") -> tuple[float, float]:
    """CPU µs per record to publish and to consume ``n`` records, each side in a process
    of its own, on a topic of its own: through the kit, or the bare ``client``."""
    prefix = f"hop{uuid.uuid4().hex[:8]}."
    asyncio.run(_create_topic(bootstrap, prefix))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap}
    if not traced:
        env["OTEL_TRACES_SAMPLER"] = "always_off"
    roles = (f"{client}-consume", f"{client}-publish") if client else ("consume", "publish")
    with tempfile.TemporaryDirectory(prefix="bench-hop-") as tmp:
        argv = [sys.executable, __file__]
        consumer = subprocess.Popen(
            [*argv, roles[0], prefix, str(n), tmp], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            assert consumer.stdout is not None
            if consumer.stdout.readline().strip() != "ready":
                raise RuntimeError("the consumer did not start")
            published = subprocess.run(
                [*argv, roles[1], prefix, str(n), tmp],
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
    clients = ["aiokafka"]
    if importlib.util.find_spec("confluent_kafka") is not None:
        clients.append("confluent")
    try:
        hops = {
            "the kit, spans": _hop(broker.bootstrap, n),
            "the kit, no spans": _hop(broker.bootstrap, n, traced=False),
            **{f"bare {c}": _hop(broker.bootstrap, n, client=c) for c in clients},
        }
    finally:
        broker.stop()
    for how, (publish, consume) in hops.items():
        print(
            f"hop: {n} routed requests, {how}: publish "
            f"{publish:.0f} + consume {consume:.0f} CPU µs per record"
        )
    if "confluent" not in clients:
        print("hop: bare confluent-kafka not measured (not installed; see the docstring)")
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
