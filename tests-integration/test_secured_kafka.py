"""The mesh on a secured broker: SASL_SSL with SCRAM-SHA-512 (kafka.sh's throwaway CA),
the StandardAuthorizer, and the ACL table ``pactmesh-topics --acls`` applies. Each
service authenticates as its own principal; an upstream system as ``upstream``.

Shown here: Kafka itself refuses a write to ``tool.calls`` from anyone but the
orchestrator (the tools service's and an upstream's credentials alike) and accepts the
owner's; a wrong password does not connect; the ACLs the cluster holds for each service
are exactly what its code publishes and reads (its AsyncAPI document, which FastStream
generates from its publishers and subscribers); a whole workflow (HTTP, a review, a tool
committing an order, delivery) and an upstream's request on the inbound topic run to
their results; re-applying the table changes nothing and a narrower one takes away what
it no longer grants, under its own prefix only.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from pactmesh_client import (
    Envelope,
    KafkaSecurity,
    Principal,
    RequestPublisher,
    ResultSubscriber,
    WorkflowResult,
)
from pactmesh_contracts.topics import (
    DEAD_LETTERS,
    TOOL_CALLS,
)
from pactmesh_harness.mesh import (
    REPO,
    SERVICES,
    UPSTREAM,
    Broker,
    Mesh,
    free_port_block,
    running_mesh,
    start_broker,
)
from pactmesh_harness.workflow_client import (
    decide,
    entries_for,
    finished,
    pending_review,
    submit,
    wait_status,
)
from pactmesh_kit.acls import (
    Acl,
    Operation,
    PatternType,
    ResourceType,
    describe_acls,
)
from pactmesh_kit.bootstrap import admin_client
from pactmesh_kit.settings import TopicSettings
from pactmesh_workflows.registry import registry

FORGED = b'{"type": "tool.call.requested.v1", "forged": true}'


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A SASL_SSL broker of this module's own, formatted fresh (its SCRAM users and CA)."""
    data = tmp_path_factory.mktemp("kafka-secured") / "data"
    broker = start_broker(
        REPO / ".cache", port=free_port_block(2), security_protocol="SASL_SSL", data_dir=data
    )
    print(f"\nkafka: {broker.how} at {broker.bootstrap}, ready in {broker.startup_s:.1f}s")
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def mesh(secured: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The six services on the secured broker, each as its own Kafka principal."""
    with running_mesh(secured, tmp_path_factory.mktemp("secured-mesh")) as running:
        yield running


async def _produce(mesh: Mesh, user: str, topic: str, value: bytes) -> Any:
    producer = AIOKafkaProducer(**mesh.kafka_options(user), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        return await asyncio.wait_for(producer.send_and_wait(topic, value, key=b"k"), 30)
    finally:
        await producer.stop()


@pytest.mark.parametrize("user", ["tools", UPSTREAM])
def test_kafka_refuses_a_write_to_tool_calls_from_anyone_but_the_orchestrator(
    mesh: Mesh, user: str
) -> None:
    topic = TOOL_CALLS.qualified(mesh.prefix)
    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(_produce(mesh, user, topic, FORGED))
    accepted = asyncio.run(_produce(mesh, "orchestrator", topic, FORGED))
    assert accepted.offset >= 0


def test_an_upstream_may_not_read_what_the_services_exchange(mesh: Mesh) -> None:
    async def consume() -> None:
        consumer = AIOKafkaConsumer(
            TOOL_CALLS.qualified(mesh.prefix),
            **mesh.kafka_options(UPSTREAM),
            group_id=f"{mesh.prefix}{UPSTREAM}.snoop",
        )
        try:
            await consumer.start()
            await consumer.getmany(timeout_ms=2000)
        finally:
            await consumer.stop()

    with pytest.raises(TopicAuthorizationFailedError):
        asyncio.run(consume())


def test_a_wrong_password_does_not_connect(mesh: Mesh) -> None:
    options = mesh.kafka_options("tools") | {"sasl_plain_password": "not-the-password"}

    async def connect() -> None:
        producer = AIOKafkaProducer(**options, request_timeout_ms=5000)
        try:
            await producer.start()
        finally:
            await producer.stop()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect())


def _documented(document: dict[str, Any], prefix: str) -> tuple[set[str], set[str]]:
    """The logical topics a service's AsyncAPI document sends to and receives from."""
    channels = document["channels"]
    found: dict[str, set[str]] = {"send": set(), "receive": set()}
    for operation in document["operations"].values():
        channel = channels[operation["channel"]["$ref"].rsplit("/", 1)[1]]
        found[operation["action"]].add(channel["address"].removeprefix(prefix))
    return found["send"], found["receive"]


def _granted(acls: set[Acl], principal: str, operation: Operation, prefix: str) -> set[str]:
    """The logical topics ``principal`` may ``operation``, prefixed grants expanded."""
    topics = {t.name for t in registry().result_topics()}
    names = set()
    for acl in acls:
        if (acl.principal, acl.operation, acl.resource) != (
            principal,
            operation,
            ResourceType.TOPIC,
        ):
            continue
        name = acl.name.removeprefix(prefix)
        if acl.pattern is PatternType.PREFIXED:
            names |= {t for t in topics if t.startswith(name)}
        else:
            names.add(name)
    return names


def _cluster_acls(broker: Broker) -> set[Acl]:
    settings = TopicSettings.model_validate(broker.client_env())

    async def describe() -> set[Acl]:
        async with admin_client(settings) as admin:
            return await describe_acls(admin)

    return asyncio.run(describe())


def test_each_service_is_granted_exactly_what_its_code_publishes_and_reads(
    mesh: Mesh, secured: Broker
) -> None:
    acls = _cluster_acls(secured)
    for service in SERVICES:
        document = httpx.get(f"{mesh.url(service)}/asyncapi.json", timeout=10).json()
        sends, receives = _documented(document, mesh.prefix)
        principal = f"User:{service}"
        # Dead letters are written by the kit for every consumer, undeclared.
        assert _granted(acls, principal, Operation.WRITE, mesh.prefix) == sends | {
            DEAD_LETTERS.name
        }, service
        assert _granted(acls, principal, Operation.READ, mesh.prefix) == receives, service
        groups = {
            a.name for a in acls if a.principal == principal and a.resource is ResourceType.GROUP
        }
        assert f"{mesh.prefix}{service}." in groups, service


@pytest.mark.timeout(240)
def test_a_whole_workflow_runs_on_the_secured_cluster(mesh: Mesh) -> None:
    rid = submit(
        mesh,
        "Please raise a purchase order for 25 laptops from Acme, about $30,000",
        scopes=("workflow:procurement",),
    )
    wait_status(mesh, rid, "waiting_for_review")
    review = pending_review(mesh, rid)
    assert (
        decide(mesh, review["review_id"], "approve", roles=["procurement-manager"]).status_code
        == 200
    )
    values = finished(mesh, rid, timeout=90)
    assert values["outcome"] == "succeeded", values.get("error")
    assert [e["kind"] for e in entries_for(mesh, rid)] == ["purchase_order"]

    upstream = KafkaSecurity.from_env(mesh.broker.client_env(UPSTREAM))
    principal = Principal(
        subject="system:crm", roles=("upstream-system",), scopes=("workflow:support-triage",)
    )

    async def from_upstream() -> dict[uuid.UUID, Envelope[WorkflowResult]]:
        token = mesh.token(tenant="default", principal=principal)
        async with RequestPublisher(
            mesh.bootstrap, token=token, topic_prefix=mesh.prefix, security=upstream
        ) as requests:
            triage = await requests.submit(text="How do I reset my password?")
        results = ResultSubscriber(
            mesh.bootstrap,
            group_id=f"{mesh.prefix}{UPSTREAM}.results-{uuid.uuid4().hex[:6]}",
            topic_prefix=mesh.prefix,
            security=upstream,
        )
        found: dict[uuid.UUID, Envelope[WorkflowResult]] = {}
        async with results, asyncio.timeout(120):
            async for result in results.results(workflows=["procurement", "support-triage"]):
                found[result.workflow_id] = result
                if {rid, triage} <= found.keys():
                    return found
        raise AssertionError("unreachable")

    found = asyncio.run(from_upstream())
    assert found[rid].payload.workflow == "procurement"
    [triage] = set(found) - {rid}
    assert found[triage].payload.workflow == "support-triage"
    assert found[triage].payload.outcome.value == "succeeded"


def _topics_command(secured: Broker, prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")},
        **secured.client_env(),
        "PACTMESH_TOPIC_PREFIX": prefix,
    }
    return subprocess.run(
        [sys.executable, "-m", "pactmesh_kit.bootstrap", "--acls", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_table_is_reconciled_under_its_own_prefix(secured: Broker, mesh: Mesh) -> None:
    prefix = f"acl-{uuid.uuid4().hex[:8]}."
    others = {a for a in _cluster_acls(secured) if a.name.startswith(mesh.prefix)}

    first = _topics_command(secured, prefix, "--upstream", "crm=refund")
    assert first.returncode == 0, first.stderr
    row = rf"^User:crm +READ +TOPIC +{re.escape(prefix)}results\.refund$"
    assert re.search(row, first.stdout, re.MULTILINE), first.stdout
    crm = {a for a in _cluster_acls(secured) if a.principal == "User:crm"}
    assert {(a.operation, a.name) for a in crm} == {
        (Operation.WRITE, f"{prefix}requests.inbound"),
        (Operation.READ, f"{prefix}results.refund"),
        (Operation.READ, f"{prefix}crm."),
    }

    again = _topics_command(secured, prefix, "--upstream", "crm=refund")
    assert again.stdout.splitlines()[-1] == "acls: 0 were created, 0 deleted"
    preview = _topics_command(secured, prefix, "--dry-run")
    assert preview.stdout.splitlines()[-1] == "acls: 0 would be created, 3 deleted"
    narrower = _topics_command(secured, prefix)
    assert narrower.stdout.splitlines()[-1] == "acls: 0 were created, 3 deleted"

    after = _cluster_acls(secured)
    assert not {a for a in after if a.principal == "User:crm"}
    assert {a for a in after if a.name.startswith(mesh.prefix)} == others
