"""A local three-node KRaft cluster from infra/kafka/kafka.sh: ``pactmesh-topics`` replicates
every topic three times with ``min.insync.replicas`` 2, so an ``acks=all`` write still
succeeds while one node is down, and ``kafka.sh start`` brings the missing node back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from pactmesh_contracts.topics import TOOL_CALLS
from pactmesh_harness.mesh import KAFKA_SH, free_port_block, wait_for
from pactmesh_harness.procstat import alive
from pactmesh_kit.bootstrap import TopicReport, admin_client, ensure_topics, topic_overrides
from pactmesh_kit.settings import TopicSettings
from pactmesh_workflows.registry import registry

NODES = 3


class Cluster:
    """kafka.sh's cluster in a data dir of its own."""

    def __init__(self, data_dir: Path) -> None:
        port = free_port_block(2 * NODES)
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
            "KAFKA_NODES": str(NODES),
            "KAFKA_DATA_DIR": str(data_dir),
            "KAFKA_PORT": str(port),
            "KAFKA_CONTROLLER_PORT": str(port + 1),
        }
        self.bootstrap = ",".join(f"127.0.0.1:{port + 2 * i}" for i in range(NODES))

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KAFKA_SH), command], env=self.env, capture_output=True, text=True, timeout=300
        )

    def pid(self, node: int) -> int:
        data = Path(self.env["KAFKA_DATA_DIR"])
        return int((data.parent / f"broker-{node}.pid").read_text())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("kafka-cluster") / "data")
    started = cluster.run("start")
    assert started.returncode == 0, started.stderr
    print(f"\n{started.stdout.strip()}")
    try:
        yield cluster
    finally:
        cluster.run("stop")


def _settings(cluster: Cluster, prefix: str) -> TopicSettings:
    return TopicSettings.model_validate(
        {"KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap, "PACTMESH_TOPIC_PREFIX": prefix}
    )


async def _write(cluster: Cluster, topic: str) -> int:
    producer = AIOKafkaProducer(
        bootstrap_servers=cluster.bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        sent = await asyncio.wait_for(producer.send_and_wait(topic, b"x", key=b"k"), 60)
        return int(sent.offset)
    finally:
        await producer.stop()


@pytest.mark.timeout(300)
def test_topics_survive_the_loss_of_one_node(cluster: Cluster) -> None:
    prefix = f"cluster-{uuid.uuid4().hex[:8]}."
    settings = _settings(cluster, prefix)
    names = [t.qualified(prefix) for t in registry().all_topics()]

    async def create() -> tuple[TopicReport, list[Any], dict[str, dict[str, str]]]:
        async with admin_client(settings) as admin:
            report = await ensure_topics(admin, settings)
            return report, await admin.describe_topics(names), await topic_overrides(admin, names)

    report, described, overrides = asyncio.run(create())
    assert report.brokers == NODES
    for topic in described:
        partitions = topic["partitions"]
        assert {len(p["replicas"]) for p in partitions} == {3}, topic["topic"]
    assert {o["min.insync.replicas"] for o in overrides.values()} == {"2"}

    calls = TOOL_CALLS.qualified(prefix)
    assert asyncio.run(_write(cluster, calls)) >= 0
    node = cluster.pid(2)
    os.kill(node, signal.SIGTERM)
    wait_for(lambda: not alive(node), timeout=60, what="node 2 gone")
    assert cluster.run("status").returncode == 1
    assert asyncio.run(_write(cluster, calls)) >= 1, "acks=all with 2 of 3 in sync"

    restarted = cluster.run("start")
    assert restarted.returncode == 0, restarted.stderr
    assert cluster.run("status").stdout.count("running") == NODES
