"""The Python client on a real broker: requests published with ``RequestPublisher`` come
back as typed results through ``ResultSubscriber``, which skips a record it cannot decode,
filters by tenant, and commits what it handled."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from pactmesh_client import (
    Envelope,
    KafkaSecurity,
    Outcome,
    Principal,
    RequestPublisher,
    ResultSubscriber,
    WorkflowResult,
)
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.topics import result_topic
from pactmesh_harness.mesh import Mesh

UPSTREAM = Principal(
    subject="system:crm",
    roles=("upstream-system",),
    scopes=("workflow:support-triage", "workflow:refund"),
)
WORKFLOWS = ["support-triage", "refund"]
GARBAGE = b'{"type": "workflow.result.v1", "not": "an envelope"}'


def _admin(mesh: Mesh) -> KafkaSecurity:
    """The client settings of the mesh's Kafka super user (plaintext on a plaintext broker)."""
    return KafkaSecurity.from_env(mesh.broker.client_env())


def _publisher(mesh: Mesh, tenant: str) -> RequestPublisher:
    """The upstream's publisher, with its token for ``tenant``."""
    return RequestPublisher(
        mesh.bootstrap,
        token=mesh.token(tenant=tenant, principal=UPSTREAM),
        topic_prefix=mesh.prefix,
        security=_admin(mesh),
    )


async def _collect(
    subscriber: ResultSubscriber,
    ids: set[uuid.UUID],
    *,
    tenant: str | None = None,
    linger_s: float = 0.0,
    deadline_s: float = 60.0,
) -> dict[uuid.UUID, Envelope[WorkflowResult]]:
    """Results until every one of ``ids`` came, then for ``linger_s`` more seconds."""
    found: dict[uuid.UUID, Envelope[WorkflowResult]] = {}
    lingering = False
    try:
        async with asyncio.timeout(deadline_s) as deadline:
            async for result in subscriber.results(workflows=WORKFLOWS, tenant=tenant):
                found[result.workflow_id] = result
                if not lingering and ids <= found.keys():
                    if not linger_s:
                        break
                    lingering = True
                    deadline.reschedule(asyncio.get_running_loop().time() + linger_s)
    except TimeoutError:
        if not lingering:
            raise
    return found


@pytest.mark.timeout(240)
async def test_publish_with_the_client_and_receive_the_results(mesh: Mesh) -> None:
    triage_id, refund_id, other_id = uuid7(), uuid7(), uuid7()
    # A record no contract accepts, on the partition triage's result will land on (same key).
    producer = AIOKafkaProducer(**mesh.kafka_options(), acks="all")
    await producer.start()
    try:
        topic = result_topic("support-triage").qualified(mesh.prefix)
        await producer.send_and_wait(topic, GARBAGE, key=str(triage_id).encode())
    finally:
        await producer.stop()

    for workflow_id, text, tenant in [
        (triage_id, "How do I reset my password?", "acme"),
        (refund_id, "I want a refund for order 4411, the headphones arrived broken", "acme"),
        (other_id, "How do I reset my password?", "globex"),
    ]:
        # One token per tenant the upstream acts for: the request claims the token's.
        async with _publisher(mesh, tenant) as requests:
            sent = await requests.submit(
                text=text, metadata={"ticket": f"T-{workflow_id.hex[:6]}"}, workflow_id=workflow_id
            )
        assert sent == workflow_id

    everyone = ResultSubscriber(
        mesh.bootstrap,
        group_id=f"client-all-{uuid.uuid4().hex[:6]}",
        topic_prefix=mesh.prefix,
        security=_admin(mesh),
    )
    async with everyone:
        results = await _collect(everyone, {triage_id, refund_id, other_id})
    triage, refund = results[triage_id], results[refund_id]
    assert triage.payload.workflow == "support-triage"
    assert refund.payload.workflow == "refund"
    assert refund.payload.outcome is Outcome.SUCCEEDED
    assert refund.payload.metadata == {"ticket": f"T-{refund_id.hex[:6]}"}
    assert everyone.skipped == 1
    [bad] = everyone.undecodable
    assert (bad.value, bad.key) == (GARBAGE, str(triage_id).encode())
    assert "principal" in bad.error

    # A tenant's subscriber: acme's results only, though globex's sit on the same topics.
    group = f"client-acme-{uuid.uuid4().hex[:6]}"
    acme = ResultSubscriber(
        mesh.bootstrap, group_id=group, topic_prefix=mesh.prefix, security=_admin(mesh)
    )
    async with acme:
        mine = await _collect(acme, {triage_id, refund_id}, tenant="acme", linger_s=3.0)
    assert set(mine) == {triage_id, refund_id}

    # The same group later: what it handled was committed, so only the new result comes.
    later_id = uuid7()
    async with _publisher(mesh, "acme") as requests:
        await requests.submit(text="How do I reset my password?", workflow_id=later_id)
    again = ResultSubscriber(
        mesh.bootstrap, group_id=group, topic_prefix=mesh.prefix, security=_admin(mesh)
    )
    async with again, asyncio.timeout(60):
        first = await anext(again.results(workflows=WORKFLOWS, tenant="acme"))
    assert first.workflow_id == later_id
