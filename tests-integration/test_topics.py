"""``pactmesh-topics`` on a real broker: topics created with the wanted replication and
settings, settings that drifted brought back (other overrides kept), a partition count
that differs reported and never changed, ``--dry-run`` changing nothing."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from pactmesh_contracts.topics import AUDIT, DEAD_LETTERS, TOOL_CALLS
from pactmesh_harness.mesh import Broker, wait_for
from pactmesh_kit.bootstrap import DAY_MS, admin_client, ensure_topics, topic_overrides
from pactmesh_kit.settings import TopicSettings
from pactmesh_workflows.registry import registry

ALL_TOPICS = registry().all_topics()

T = TypeVar("T")


def settings(broker: Broker, prefix: str, **extra: str) -> TopicSettings:
    return TopicSettings.model_validate(
        broker.client_env() | {"PACTMESH_TOPIC_PREFIX": prefix} | extra
    )


def with_admin(
    broker: Broker, prefix: str, use: Callable[[AIOKafkaAdminClient, TopicSettings], Awaitable[T]]
) -> T:
    wanted = settings(broker, prefix)

    async def run() -> T:
        async with admin_client(wanted) as admin:
            return await use(admin, wanted)

    return asyncio.run(run())


def retention(broker: Broker, prefix: str, topic: str) -> str:
    overrides = with_admin(broker, prefix, lambda admin, _s: topic_overrides(admin, [topic]))
    return str(overrides[topic].get("retention.ms"))


def test_topics_are_created_with_min_isr_and_the_retention_settings(broker: Broker) -> None:
    prefix = f"topics-{uuid.uuid4().hex[:8]}."
    report = with_admin(broker, prefix, ensure_topics)
    names = [t.qualified(prefix) for t in ALL_TOPICS]
    assert report.created == sorted(names)
    assert (report.replication.factor, report.replication.min_insync) == (1, 1)

    overrides = with_admin(broker, prefix, lambda admin, _s: topic_overrides(admin, names))
    assert {overrides[n]["min.insync.replicas"] for n in names} == {"1"}
    assert overrides[AUDIT.qualified(prefix)]["retention.ms"] == str(365 * DAY_MS)
    assert overrides[DEAD_LETTERS.qualified(prefix)]["retention.ms"] == str(30 * DAY_MS)

    again = with_admin(broker, prefix, ensure_topics)
    assert (again.created, again.altered, again.left_alone) == ([], {}, [])


def test_drifted_settings_are_brought_back_and_other_overrides_kept(broker: Broker) -> None:
    prefix = f"topics-{uuid.uuid4().hex[:8]}."
    with_admin(broker, prefix, ensure_topics)
    dlq = DEAD_LETTERS.qualified(prefix)
    week, kept = str(7 * DAY_MS), {"max.message.bytes": "2097152"}

    async def drift(admin: AIOKafkaAdminClient, _s: TopicSettings) -> Any:
        configs = {"min.insync.replicas": "1", "retention.ms": week, **kept}
        return await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, dlq, configs)])

    with_admin(broker, prefix, drift)
    # A config change reaches the brokers through the metadata log: visible shortly after.
    wait_for(lambda: retention(broker, prefix, dlq) == week, timeout=30, what="the drift")

    async def dry_run(admin: AIOKafkaAdminClient, wanted: TopicSettings) -> Any:
        return await ensure_topics(admin, wanted, dry_run=True)

    preview = with_admin(broker, prefix, dry_run)
    assert preview.altered == {dlq: {"retention.ms": (week, str(30 * DAY_MS))}}
    assert retention(broker, prefix, dlq) == week

    report = with_admin(broker, prefix, ensure_topics)
    assert report.altered == preview.altered
    month = str(30 * DAY_MS)
    wait_for(lambda: retention(broker, prefix, dlq) == month, timeout=30, what="the alteration")
    now = with_admin(broker, prefix, lambda admin, _s: topic_overrides(admin, [dlq]))[dlq]
    assert now["max.message.bytes"] == kept["max.message.bytes"]


def test_a_different_partition_count_is_reported_and_left_alone(broker: Broker) -> None:
    prefix = f"topics-{uuid.uuid4().hex[:8]}."
    calls = TOOL_CALLS.qualified(prefix)

    async def precreate(admin: AIOKafkaAdminClient, _s: TopicSettings) -> None:
        await admin.create_topics([NewTopic(calls, num_partitions=2, replication_factor=1)])

    with_admin(broker, prefix, precreate)
    report = with_admin(broker, prefix, ensure_topics)
    assert calls not in report.created
    [line] = report.left_alone
    assert line.startswith(f"{calls} has 2 partitions, the registry says {TOOL_CALLS.partitions}")

    async def partitions(admin: AIOKafkaAdminClient, _s: TopicSettings) -> int:
        [described] = await admin.describe_topics([calls])
        return len(described["partitions"])

    assert with_admin(broker, prefix, partitions) == 2


def test_the_command_reports_and_exits_cleanly(broker: Broker) -> None:
    prefix = f"topics-{uuid.uuid4().hex[:8]}."
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
        **broker.client_env(),
        "PACTMESH_TOPIC_PREFIX": prefix,
        "PACTMESH_DEAD_LETTER_RETENTION_DAYS": "-1",
    }
    command = [sys.executable, "-m", "pactmesh_kit.bootstrap"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].startswith("cluster: 1 broker(s); replication factor 1")
    assert f"created {DEAD_LETTERS.qualified(prefix)}" in lines
    assert lines[-1] == f"topics: {len(ALL_TOPICS)}, {len(ALL_TOPICS)} new, 0 altered"

    refused = subprocess.run(
        command,
        env={**env, "PACTMESH_KAFKA_REPLICATION_FACTOR": "3"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "set PACTMESH_KAFKA_REPLICATION_FACTOR to at most 1" in refused.stderr


def test_the_local_broker_runs_with_its_jit_flags(broker: Broker) -> None:
    """kafka.sh's JIT flags reach the broker's JVM (the client compiler only, unless
    ``KAFKA_JIT_OPTS`` says otherwise), and the harness knows the broker's PID."""
    if broker.how != "local KRaft broker":
        pytest.skip(f"not kafka.sh's broker: {broker.how}")
    [pid] = broker.pids()
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"kafka.Kafka" in command
    expected = os.environ.get("KAFKA_JIT_OPTS", "-XX:TieredStopAtLevel=1")
    assert all(flag.encode() in command for flag in expected.split())
