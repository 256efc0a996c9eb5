"""Kafka ACLs for a secured cluster: one principal per service, each allowed to write only
the topics it owns and to read only its inputs, in consumer groups named after it;
upstream systems may write the inbound topic and read the result topics granted to them.
Every entry names a resource under the deployment's topic prefix (consumer groups
included), so several deployments share a cluster without touching each other's.

The table is derived from ``SERVICE_TOPICS`` (which service writes and reads which topic);
``tests-integration/test_secured_kafka.py`` checks it against what each service actually
publishes and subscribes to, and Kafka's StandardAuthorizer enforces it.

aiokafka's admin client has no ACL methods, so the ACLs are created, listed and deleted
with aiokafka's own protocol messages (CreateAcls, DescribeAcls, DeleteAcls) sent on its
admin client's connection, rather than with a second Kafka client library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest
from pactmesh_contracts.topics import (
    AUDIT,
    DEAD_LETTERS,
    REQUESTS_ACCEPTED,
    REQUESTS_INBOUND,
    REQUESTS_ROUTED,
    REVIEWS_DECIDED,
    REVIEWS_REQUESTED,
    TOOL_CALLS,
    TOOL_RESULTS,
    WORKFLOW_COMPLETED,
    WORKFLOW_PROGRESS,
    Topic,
    result_topic,
)
from pactmesh_workflows.registry import registry

RESULTS_PREFIX = "results."
"""Every result topic's logical name starts with this (``results.<workflow>``)."""


class ResourceType(IntEnum):
    """Kafka's ACL resource types (the protocol's codes)."""

    ANY = 1
    TOPIC = 2
    GROUP = 3
    TRANSACTIONAL_ID = 5


class PatternType(IntEnum):
    """How a resource name matches: exactly, or as a prefix."""

    ANY = 1
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    """The operations pactmesh grants (READ and WRITE imply DESCRIBE)."""

    ANY = 1
    READ = 3
    WRITE = 4


class Permission(IntEnum):
    """Only ALLOW entries are made: the authorizer denies whatever is not allowed."""

    ANY = 1
    ALLOW = 3


MANAGED_RESOURCES = frozenset(
    {ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID}
)
MANAGED_OPERATIONS = frozenset({Operation.READ, Operation.WRITE})
"""The entries pactmesh manages (ALLOW only); any other entry is an operator's own and
is never deleted."""


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW entry: ``principal`` may ``operation`` on the resource, from any host."""

    principal: str
    operation: Operation
    resource: ResourceType
    pattern: PatternType
    name: str

    def row(self) -> tuple[str, str, str, str]:
        """The entry as a table row: principal, operation, resource, name (``*`` = prefix)."""
        star = "*" if self.pattern is PatternType.PREFIXED else ""
        return (self.principal, self.operation.name, self.resource.name, f"{self.name}{star}")


@dataclass(frozen=True)
class ServiceTopics:
    """What one service publishes and consumes."""

    writes: tuple[Topic, ...] = ()
    reads: tuple[Topic, ...] = ()
    writes_results: bool = False
    """Writes every ``results.<workflow>`` topic."""
    reads_results: bool = False
    """Reads every ``results.<workflow>`` topic."""


EVERY_SERVICE_WRITES: tuple[Topic, ...] = (DEAD_LETTERS,)
"""Any consumer dead-letters what it refuses (the one topic a service writes without
declaring it: ``pactmesh_kit.kafka.DeadLetters``)."""

SERVICE_TOPICS: Mapping[str, ServiceTopics] = {
    # Intake audits inbound requests refused for who sent them, and keeps the audit
    # topic: the request timeline and the usage counts.
    "intake": ServiceTopics(
        writes=(REQUESTS_ACCEPTED, AUDIT),
        reads=(REQUESTS_INBOUND, WORKFLOW_PROGRESS, AUDIT),
        reads_results=True,
    ),
    # A refused start ends at routing, which then publishes its rejected result.
    "routing": ServiceTopics(
        writes=(REQUESTS_ROUTED, WORKFLOW_PROGRESS, WORKFLOW_COMPLETED, AUDIT),
        reads=(REQUESTS_ACCEPTED,),
    ),
    # The orchestrator audits events refused for answering nothing its runs wait for, and
    # answers a tool call past its deadline with a timeout (its durable timers).
    "orchestrator": ServiceTopics(
        writes=(
            TOOL_CALLS,
            REVIEWS_REQUESTED,
            WORKFLOW_COMPLETED,
            WORKFLOW_PROGRESS,
            AUDIT,
            TOOL_RESULTS,
        ),
        reads=(REQUESTS_ROUTED, TOOL_RESULTS, REVIEWS_DECIDED),
    ),
    # Tools and delivery read the accepted requests (what intake vouched for) to check a
    # tool call's and a result's tenant and principal against their request's.
    "tools": ServiceTopics(writes=(TOOL_RESULTS, AUDIT), reads=(TOOL_CALLS, REQUESTS_ACCEPTED)),
    "hitl": ServiceTopics(writes=(REVIEWS_DECIDED,), reads=(REVIEWS_REQUESTED, WORKFLOW_COMPLETED)),
    "delivery": ServiceTopics(
        writes=(WORKFLOW_PROGRESS, AUDIT),
        reads=(WORKFLOW_COMPLETED, REQUESTS_ACCEPTED),
        writes_results=True,
        reads_results=True,
    ),
}
"""Which service writes and reads which topic: exactly the topics each service's
publishers declare and its subscribers read, as its AsyncAPI document shows them
(``tests-integration/test_secured_kafka.py`` holds the two together)."""


@dataclass(frozen=True)
class Upstream:
    """An upstream (or downstream) system: it may submit requests on the inbound topic and
    read the result topics of ``workflows``, in consumer groups named
    ``<topic prefix><principal>.``... (``pactmesh.crm.results``), as the services' are."""

    principal: str
    workflows: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> Upstream:
        """``name``, ``name=workflow,workflow`` (the result topics it may read) or
        ``name=*`` (every workflow's)."""
        name, _, workflows = spec.partition("=")
        known = set(registry().names)
        if workflows == "*":
            workflows = ",".join(sorted(known))
        granted = tuple(w for w in workflows.split(",") if w)
        if not name or set(granted) - known:
            raise ValueError(f"bad upstream {spec!r}: name=workflow,... of {sorted(known)}")
        return cls(name, granted)


def _topic(principal: str, op: Operation, name: str, pattern: PatternType) -> Acl:
    return Acl(f"User:{principal}", op, ResourceType.TOPIC, pattern, name)


def service_acls(service: str, *, principal: str, prefix: str) -> set[Acl]:
    """The entries of one service: its writes, its reads and its consumer groups."""
    topics = SERVICE_TOPICS[service]
    literal, prefixed = PatternType.LITERAL, PatternType.PREFIXED
    acls = {
        _topic(principal, Operation.WRITE, t.qualified(prefix), literal)
        for t in (*topics.writes, *EVERY_SERVICE_WRITES)
    }
    acls |= {_topic(principal, Operation.READ, t.qualified(prefix), literal) for t in topics.reads}
    results = f"{prefix}{RESULTS_PREFIX}"
    if topics.writes_results:
        acls.add(_topic(principal, Operation.WRITE, results, prefixed))
        # Results go out in Kafka transactions, under transactional ids named after it.
        ident = f"{prefix}{service}-"
        acls.add(
            Acl(
                f"User:{principal}", Operation.WRITE, ResourceType.TRANSACTIONAL_ID, prefixed, ident
            )
        )
    if topics.reads_results:
        acls.add(_topic(principal, Operation.READ, results, prefixed))
    group = f"{prefix}{service}."
    acls.add(Acl(f"User:{principal}", Operation.READ, ResourceType.GROUP, prefixed, group))
    return acls


def upstream_acls(upstream: Upstream, *, prefix: str) -> set[Acl]:
    """The entries of one upstream system."""
    name, literal = upstream.principal, PatternType.LITERAL
    acls = {_topic(name, Operation.WRITE, REQUESTS_INBOUND.qualified(prefix), literal)}
    acls |= {
        _topic(name, Operation.READ, result_topic(w).qualified(prefix), literal)
        for w in upstream.workflows
    }
    if upstream.workflows:
        group = f"{prefix}{name}."
        acls.add(
            Acl(f"User:{name}", Operation.READ, ResourceType.GROUP, PatternType.PREFIXED, group)
        )
    return acls


def acl_table(
    *,
    prefix: str,
    principals: Mapping[str, str] | None = None,
    upstreams: Iterable[Upstream] = (),
) -> set[Acl]:
    """Every entry of the mesh: each service under its principal (its own name unless
    ``principals`` maps it to another), and each upstream system."""
    names = {service: service for service in SERVICE_TOPICS} | dict(principals or {})
    acls: set[Acl] = set()
    for service, principal in names.items():
        acls |= service_acls(service, principal=principal, prefix=prefix)
    for upstream in upstreams:
        acls |= upstream_acls(upstream, prefix=prefix)
    return acls


def format_table(acls: Iterable[Acl]) -> str:
    """The entries as an aligned text table, by principal."""
    rows = [("principal", "operation", "resource", "name (* = prefix)")]
    rows += [acl.row() for acl in sorted(acls)]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


@dataclass(frozen=True)
class AclChanges:
    """What ``apply_acls`` did."""

    created: frozenset[Acl]
    deleted: frozenset[Acl]
    """Entries of the mesh's principals that the table no longer has."""


async def apply_acls(
    admin: AIOKafkaAdminClient, acls: set[Acl], *, prefix: str, dry_run: bool = False
) -> AclChanges:
    """Make the cluster's entries on the deployment's resources (every topic and group
    named under its topic ``prefix``, whoever they grant) exactly ``acls``: create the
    missing ones and delete the others, so a re-run with a narrower table (an upstream
    removed, a grant withdrawn) takes the rest away. Another deployment's entries on the
    same cluster (another prefix) are left alone. ``dry_run`` only says what would change."""
    if stray := sorted(acl.name for acl in acls if not acl.name.startswith(prefix)):
        raise ValueError(f"entries outside the prefix {prefix!r}: {stray}")
    existing = {acl for acl in await describe_acls(admin) if acl.name.startswith(prefix)}
    changes = AclChanges(frozenset(acls - existing), frozenset(existing - acls))
    if dry_run:
        return changes
    for acl in sorted(changes.created):
        _check(await _send(admin, CreateAclsRequest(*_binding(acl))), "creation_responses")
    for acl in sorted(changes.deleted):
        _check(await _send(admin, DeleteAclsRequest(*_binding(acl))), "filter_responses")
    return changes


async def describe_acls(admin: AIOKafkaAdminClient, principal: str | None = None) -> set[Acl]:
    """The ALLOW entries on topics and groups (of ``principal`` only, when given)."""
    request = DescribeAclsRequest(
        ResourceType.ANY, None, PatternType.ANY, principal, None, Operation.ANY, Permission.ANY
    )
    response = await _send(admin, request)
    if response.error_code:
        raise RuntimeError(f"DescribeAcls failed: {response.error_code} {response.error_message}")
    found = set()
    for resource_type, name, pattern, entries in response.resources:
        if resource_type not in MANAGED_RESOURCES:
            continue
        for entry_principal, _host, operation, permission in entries:
            if permission == Permission.ALLOW and operation in MANAGED_OPERATIONS:
                found.add(
                    Acl(
                        entry_principal,
                        Operation(operation),
                        ResourceType(resource_type),
                        PatternType(pattern),
                        name,
                    )
                )
    return found


def _binding(acl: Acl) -> tuple[Any, ...]:
    return (
        acl.resource,
        acl.name,
        acl.pattern,
        acl.principal,
        "*",
        acl.operation,
        Permission.ALLOW,
    )


async def _send(admin: AIOKafkaAdminClient, request: Any) -> Any:
    # Any broker answers ACL requests; KRaft forwards the writes to the controller.
    client = admin._client
    return await client.send(client.get_random_node(), request)


def _check(response: Any, field: str) -> None:
    for result in getattr(response, field):
        if result[0]:
            raise RuntimeError(f"{type(response).__name__}: error {result[0]}: {result[1]}")
