"""One hop through the kit on the real broker, with nothing else: what a record costs
to publish and to consume before any service does anything with it.

A workflow of the bench's support-triage phase sends some 20 records through Kafka and
its services handle some 24 (docs/benchmarks.md, "Records per workflow"). This measures
the floor of each: a publisher process builds and publishes ``HOP_RECORDS`` routed
requests with the kit's ``EventPublisher`` (pipelined, as the services do), and a
consumer process handles them with a kit subscriber whose handler does nothing. Both
are set up as a service is (``setup_telemetry``: tracing on, spans to a local file, as
shipped; the kit's metrics; the services' event loop and garbage collector settings).
CPU per record is each process's CPU from its first record to its last (start-up and
shutdown left out).

``uv run --no-sync python bench/hop.py`` prints the figures; ``HOP_RECORDS`` (default
20000) records, ``HOP_KAFKA_PORT`` (default 19592) the local broker's port,
``HOP_TRACED=0`` the same with no spans (``OTEL_TRACES_SAMPLER=always_off``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from pactmesh_kit.kafka import Kafka
from pactmesh_kit.settings import KitSettings

REPO = Path(__file__).resolve().parent.parent


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
    if settings.event_loop == "uvloop":
        import uvloop

        figures = uvloop.run(run(settings, n))
    else:
        figures = asyncio.run(run(settings, n))
    print(json.dumps(figures), flush=True)


async def _create_topic(bootstrap: str, name: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from pactmesh_contracts.topics import KEYED_PARTITIONS

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, KEYED_PARTITIONS, 1)])
    finally:
        await admin.close()


def main() -> int:
    from pactmesh_contracts.topics import REQUESTS_ROUTED
    from pactmesh_harness.mesh import start_broker

    n = int(os.environ.get("HOP_RECORDS", "20000"))
    port = int(os.environ.get("HOP_KAFKA_PORT", "19592"))
    if os.environ.get("HOP_TRACED", "1") == "0":
        os.environ["OTEL_TRACES_SAMPLER"] = "always_off"
    broker = start_broker(REPO / ".cache", name="kafka-hop", port=port)
    prefix = f"hop{uuid.uuid4().hex[:8]}."
    try:
        os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
        asyncio.run(_create_topic(broker.bootstrap, REQUESTS_ROUTED.qualified(prefix)))
        with tempfile.TemporaryDirectory(prefix="bench-hop-") as tmp:
            argv = [sys.executable, __file__]
            consumer = subprocess.Popen(
                [*argv, "consume", prefix, str(n), tmp], stdout=subprocess.PIPE, text=True
            )
            assert consumer.stdout is not None
            if consumer.stdout.readline().strip() != "ready":
                raise RuntimeError("the consumer did not start")
            published = subprocess.run(
                [*argv, "publish", prefix, str(n), tmp],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
                timeout=300,
            )
            consumed_out, _ = consumer.communicate(timeout=300)
    finally:
        broker.stop()
    publish = json.loads(published.stdout.strip().splitlines()[-1])
    consume = json.loads(consumed_out.strip().splitlines()[-1])
    traced = os.environ.get("OTEL_TRACES_SAMPLER") != "always_off"
    print(
        f"hop: {n} routed requests, tracing {'on' if traced else 'off'}: publish "
        f"{publish['cpu_us_per_record']:.0f} + consume {consume['cpu_us_per_record']:.0f} "
        f"CPU µs per record"
    )
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5:
        _role(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
    else:
        sys.exit(main())
