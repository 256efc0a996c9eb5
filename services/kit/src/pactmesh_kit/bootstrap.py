"""``pactmesh-topics``: create every topic of the registry, explicitly, replicated as the
cluster allows; keep their settings as configured; apply the ACL table.

Topics are never auto-created: a typo in a topic name must fail loudly, and keyed
topics need their partition count fixed up front (changing it later re-partitions
keys and breaks per-workflow ordering), so a partition count that differs from the
registry is reported and never changed.

Replication comes from ``TopicSettings``: by default 3 replicas and ``min.insync.replicas``
2 on a cluster of three or more brokers, 1 and 1 on a single broker. The audit and
dead-letter topics keep records for their own retention settings rather than Kafka's
seven days. A topic that already exists with other values of these settings is altered
(and reported); ``--dry-run`` only reports.

With ``--acls`` (a secured cluster, run as a super user) the ACL table is applied too:
one principal per service (``--principal intake=svc-intake`` when its user name differs)
and each ``--upstream name=workflow,...``; the table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from pactmesh_contracts.topics import AUDIT, DEAD_LETTERS, Topic
from pactmesh_workflows.registry import registry

from pactmesh_kit.acls import SERVICE_TOPICS, AclChanges, Upstream, acl_table, apply_acls
from pactmesh_kit.acls import format_table as format_acls
from pactmesh_kit.settings import TopicSettings

logger = logging.getLogger(__name__)

DAY_MS = 86_400_000
MIN_ISR = "min.insync.replicas"
RETENTION = "retention.ms"
DYNAMIC_TOPIC_CONFIG = 1
"""DescribeConfigs' source code of a value set on the topic itself (an override)."""


@dataclass(frozen=True)
class Replication:
    """How every topic's partitions are replicated."""

    factor: int
    min_insync: int

    @classmethod
    def choose(cls, settings: TopicSettings, *, brokers: int) -> Replication:
        """The settings' values, or the defaults for a cluster of ``brokers``."""
        factor = settings.replication_factor or min(3, brokers)
        if factor > brokers:
            raise ValueError(
                f"replication factor {factor} needs {factor} brokers, the cluster has "
                f"{brokers}: set PACTMESH_KAFKA_REPLICATION_FACTOR to at most {brokers}"
            )
        min_insync = settings.min_insync_replicas or (2 if factor >= 3 else 1)
        if min_insync > factor:
            raise ValueError(
                f"min.insync.replicas {min_insync} exceeds the replication factor {factor}: "
                "lower PACTMESH_KAFKA_MIN_INSYNC_REPLICAS"
            )
        return cls(factor, min_insync)


def wanted_config(
    topic: Topic, settings: TopicSettings, replication: Replication
) -> dict[str, str]:
    """The topic-level settings ``topic`` should have on the cluster."""
    config = dict(topic.config) | {MIN_ISR: str(replication.min_insync)}
    retention = {
        AUDIT.name: settings.audit_retention_days,
        DEAD_LETTERS.name: settings.dead_letter_retention_days,
    }.get(topic.name)
    if retention is not None:
        config[RETENTION] = str(retention * DAY_MS if retention > 0 else -1)
    return config


@dataclass
class TopicReport:
    """What ``ensure_topics`` found and did."""

    brokers: int
    replication: Replication
    created: list[str] = field(default_factory=list)
    altered: dict[str, dict[str, tuple[str | None, str]]] = field(default_factory=dict)
    """Per topic, each setting changed: (value before, value now)."""
    left_alone: list[str] = field(default_factory=list)
    """Differences that are reported and never changed (partitions, replication factor)."""

    def lines(self, *, dry_run: bool = False) -> list[str]:
        """The report as lines of text."""
        create, alter = ("would create", "would alter") if dry_run else ("created", "altered")
        out = [
            f"cluster: {self.brokers} broker(s); replication factor {self.replication.factor}, "
            f"min.insync.replicas {self.replication.min_insync}",
            *(f"{create} {name}" for name in self.created),
        ]
        for name, changes in sorted(self.altered.items()):
            out += [f"{alter} {name}: {k} {old} -> {new}" for k, (old, new) in changes.items()]
        return out + [f"left as is: {line}" for line in self.left_alone]


@asynccontextmanager
async def admin_client(
    settings: TopicSettings, *, deadline_s: float = 60.0
) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client connected as the settings say, retrying until the cluster answers."""
    deadline = time.monotonic() + deadline_s
    options = settings.kafka_client_options() | {"client_id": "pactmesh-bootstrap"}
    while True:
        admin = AIOKafkaAdminClient(**options)
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            await admin.close()
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(
    admin: AIOKafkaAdminClient,
    settings: TopicSettings,
    *,
    topics: tuple[Topic, ...] | None = None,
    dry_run: bool = False,
    deadline_s: float = 60.0,
) -> TopicReport:
    """Create the topics that do not exist yet (by default every topic of the mesh and
    every registered workflow's result topic) and bring the settings of those that do
    to what ``settings`` say (only report when ``dry_run``)."""
    topics = registry().all_topics() if topics is None else topics
    brokers = len((await admin.describe_cluster())["brokers"])
    report = TopicReport(brokers, Replication.choose(settings, brokers=brokers))
    wanted = {t.qualified(settings.topic_prefix): t for t in topics}
    existing = set(await admin.list_topics()) & set(wanted)
    missing = {name: t for name, t in wanted.items() if name not in existing}
    if missing and not dry_run:
        await _create(admin, missing, settings, report.replication)
        await _until_visible(admin, set(missing), deadline_s)
    report.created = sorted(missing)
    if existing:
        present = {name: wanted[name] for name in existing}
        report.left_alone = await _layout_differences(admin, present, report.replication)
        report.altered = await _reconcile_configs(
            admin, present, settings, report.replication, dry_run=dry_run
        )
    return report


async def _create(
    admin: AIOKafkaAdminClient,
    topics: Mapping[str, Topic],
    settings: TopicSettings,
    replication: Replication,
) -> None:
    new = [
        NewTopic(
            name=name,
            num_partitions=topic.partitions,
            replication_factor=replication.factor,
            topic_configs=wanted_config(topic, settings, replication),
        )
        for name, topic in topics.items()
    ]
    response = await admin.create_topics(new)
    for name, code, message in _errors(response):
        if code not in (0, TopicAlreadyExistsError.errno):
            raise RuntimeError(f"creating {name} failed: {code} {message}")


async def _layout_differences(
    admin: AIOKafkaAdminClient, topics: Mapping[str, Topic], replication: Replication
) -> list[str]:
    """Partition counts and replication factors that differ from what is wanted."""
    found = []
    for described in await admin.describe_topics(sorted(topics)):
        name, partitions = described["topic"], described["partitions"]
        topic = topics[name]
        if len(partitions) != topic.partitions:
            found.append(
                f"{name} has {len(partitions)} partitions, the registry says {topic.partitions} "
                "(changing them moves keys between partitions: do it by migrating to a new topic)"
            )
        replicas = min(len(p["replicas"]) for p in partitions) if partitions else 0
        if replicas != replication.factor:
            found.append(
                f"{name} has {replicas} replica(s) per partition, wanted {replication.factor} "
                "(reassign its partitions with kafka-reassign-partitions)"
            )
    return found


async def _reconcile_configs(
    admin: AIOKafkaAdminClient,
    topics: Mapping[str, Topic],
    settings: TopicSettings,
    replication: Replication,
    *,
    dry_run: bool,
) -> dict[str, dict[str, tuple[str | None, str]]]:
    """Alter the topic settings that differ from the wanted ones; what changed.

    Kafka's AlterConfigs (the only config write aiokafka has) replaces a topic's whole set
    of overrides, so each topic's other overrides are read first and written back with it.
    """
    current = await topic_overrides(admin, sorted(topics))
    altered: dict[str, dict[str, tuple[str | None, str]]] = {}
    resources = []
    for name, topic in topics.items():
        wanted = wanted_config(topic, settings, replication)
        have = current.get(name, {})
        changes = {k: (have.get(k), v) for k, v in wanted.items() if have.get(k) != v}
        if changes:
            altered[name] = changes
            resources.append(ConfigResource(ConfigResourceType.TOPIC, name, have | wanted))
    if resources and not dry_run:
        for response in await admin.alter_configs(resources):
            for code, message, _kind, name in response.resources:
                if code:
                    raise RuntimeError(f"altering {name} failed: {code} {message}")
    return altered


async def topic_overrides(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, Any]:
    """Each topic's settings set on the topic itself (not inherited from the broker)."""
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    overrides: dict[str, dict[str, str]] = {}
    for response in await admin.describe_configs(resources):
        for code, message, _kind, name, entries in response.resources:
            if code:
                raise RuntimeError(f"describing {name}'s settings failed: {code} {message}")
            overrides[name] = {
                entry[0]: entry[1] for entry in entries if entry[3] == DYNAMIC_TOPIC_CONFIG
            }
    return overrides


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pactmesh-topics",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Settings: KAFKA_* (connection), PACTMESH_TOPIC_PREFIX, "
        "PACTMESH_KAFKA_REPLICATION_FACTOR, PACTMESH_KAFKA_MIN_INSYNC_REPLICAS, "
        "PACTMESH_AUDIT_RETENTION_DAYS, PACTMESH_DEAD_LETTER_RETENTION_DAYS.",
    )
    parser.add_argument("--dry-run", action="store_true", help="report, change nothing")
    parser.add_argument("--acls", action="store_true", help="apply and print the ACL table")
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        type=Upstream.parse,
        metavar="NAME[=WORKFLOW,...]",
        help="an upstream principal: writes the inbound topic, reads these result topics",
    )
    parser.add_argument(
        "--principal",
        action="append",
        default=[],
        type=_principal,
        metavar="SERVICE=USER",
        help="the Kafka user a service authenticates as (default: the service's name)",
    )
    return parser


def _principal(spec: str) -> tuple[str, str]:
    service, _, user = spec.partition("=")
    if service not in SERVICE_TOPICS or not user:
        raise argparse.ArgumentTypeError(f"SERVICE=USER with SERVICE in {sorted(SERVICE_TOPICS)}")
    return service, user


async def _run(args: argparse.Namespace, settings: TopicSettings) -> AclChanges | None:
    async with admin_client(settings) as admin:
        report = await ensure_topics(admin, settings, dry_run=args.dry_run)
        for line in report.lines(dry_run=args.dry_run):
            print(line)
        total = len(registry().all_topics())
        print(f"topics: {total}, {len(report.created)} new, {len(report.altered)} altered")
        if not args.acls:
            return None
        table = acl_table(
            prefix=settings.topic_prefix,
            principals=dict(args.principal),
            upstreams=args.upstream,
        )
        print(format_acls(table))
        return await apply_acls(admin, table, prefix=settings.topic_prefix, dry_run=args.dry_run)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``pactmesh-topics``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = TopicSettings()
        changes = asyncio.run(_run(args, settings))
    except ValueError as exc:
        print(f"pactmesh-topics: {exc}", file=sys.stderr)
        return 2
    if changes is not None:
        verb = "would be" if args.dry_run else "were"
        print(f"acls: {len(changes.created)} {verb} created, {len(changes.deleted)} deleted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
