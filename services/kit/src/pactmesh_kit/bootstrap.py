"""Create every topic of the registry, explicitly, with its partition count.

Topics are never auto-created: a typo in a topic name must fail loudly, and keyed
topics need their partition count fixed up front (changing it later re-partitions
keys and breaks per-workflow ordering).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from pactmesh_contracts.topics import Topic
from pactmesh_workflows.registry import registry

from pactmesh_kit.settings import KitSettings

logger = logging.getLogger(__name__)


async def _connect(bootstrap: str, deadline_s: float) -> AIOKafkaAdminClient:
    deadline = time.monotonic() + deadline_s
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="pactmesh-bootstrap")
        try:
            await admin.start()
            return admin
        except KafkaConnectionError:
            await admin.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def ensure_topics(
    *,
    bootstrap_servers: str,
    prefix: str,
    topics: tuple[Topic, ...] | None = None,
    replication_factor: int = 1,
    deadline_s: float = 60.0,
) -> list[str]:
    """Create the topics that do not exist yet (by default every topic of the mesh and
    every registered workflow's result topic); returns the names it created."""
    topics = registry().all_topics() if topics is None else topics
    admin = await _connect(bootstrap_servers, deadline_s)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=t.qualified(prefix),
                num_partitions=t.partitions,
                replication_factor=replication_factor,
                topic_configs=dict(t.config),
            )
            for t in topics
            if t.qualified(prefix) not in existing
        ]
        if wanted:
            response = await admin.create_topics(wanted)
            for name, code, message in _errors(response):
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"creating {name} failed: {code} {message}")
            await _until_visible(admin, {t.name for t in wanted}, deadline_s)
        return [t.name.removeprefix(prefix) for t in wanted]
    finally:
        await admin.close()


async def _until_visible(admin: AIOKafkaAdminClient, names: set[str], deadline_s: float) -> None:
    """Wait until the cluster's metadata lists every new topic with its leaders, so a
    producer started right after bootstrap does not see UnknownTopicOrPartition."""
    deadline = time.monotonic() + deadline_s
    while True:
        described = await admin.describe_topics(sorted(names))
        ready = {
            d["topic"]
            for d in described
            if d["error_code"] == 0 and all(p["leader"] >= 0 for p in d["partitions"])
        }
        if ready >= names:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics not visible after {deadline_s}s: {sorted(names - ready)}")
        await asyncio.sleep(0.1)


def _errors(response: object) -> list[tuple[str, int, str | None]]:
    rows = getattr(response, "topic_errors", None) or getattr(response, "topic_error_codes", [])
    return [(row[0], row[1], row[2] if len(row) > 2 else None) for row in rows]


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pactmesh-topics``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--replication-factor", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = KitSettings()
    created = asyncio.run(
        ensure_topics(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            prefix=settings.topic_prefix,
            replication_factor=args.replication_factor,
        )
    )
    total = len(registry().all_topics())
    print(
        f"topics: {len(created)} created, {total - len(created)} already present ({total} in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
