"""Webhooks on the real broker: a receiving HTTP server on 127.0.0.1 verifies every
signature; retries, dead-lettering, duplicates and tenants, end to end."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    Channel,
    DeadLetter,
    Outcome,
    RequestAccepted,
    WorkflowCompleted,
    WorkflowResult,
)
from pactmesh_contracts.topics import (
    DEAD_LETTERS,
    REQUESTS_ACCEPTED,
    WORKFLOW_COMPLETED,
    Topic,
    result_topic,
)
from pactmesh_contracts.webhooks import (
    DELIVERY_HEADER,
    EVENT_HEADER,
)
from pactmesh_harness.mesh import Broker, Mesh, running_mesh, wait_for
from pactmesh_harness.webhooks import Receiver, receiving, register
from pactmesh_harness.workflow_client import submit

MAX_ATTEMPTS = 3
SUBMITTING_TENANT = f"hooks-{uuid.uuid4().hex[:8]}"
"""The tenant this module's HTTP requests are submitted for (their token's tenant)."""
REFUND = result_topic("refund")


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with receiving() as state:
        yield state


@pytest.fixture(scope="module")
def hooks_mesh(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    """The mesh with small retry settings, so failures play out in about a second."""
    env = {
        "PACTMESH_DELIVERY_WEBHOOK_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "PACTMESH_DELIVERY_WEBHOOK_BACKOFF_BASE_S": "0.2",
        "PACTMESH_DELIVERY_WEBHOOK_BACKOFF_CAP_S": "0.5",
        "PACTMESH_DELIVERY_WEBHOOK_TIMEOUT_S": "5",
    }
    with running_mesh(broker, tmp_path_factory.mktemp("hooks"), env=env) as mesh:
        yield mesh


# -- helpers ----------------------------------------------------------------------------


def _tenant() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def deliveries(mesh: Mesh, webhook: dict[str, Any], tenant: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{mesh.url('delivery')}/v1/webhooks/{webhook['id']}/deliveries",
        headers=mesh.bearer(tenant=tenant, roles=("integrator",)),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return list(response.json())


def settled(mesh: Mesh, webhook: dict[str, Any], tenant: str) -> list[dict[str, Any]] | None:
    """The webhook's deliveries once none is pending."""
    found = deliveries(mesh, webhook, tenant)
    return found if found and all(d["state"] != "pending" for d in found) else None


def completed(tenant: str) -> bytes:
    event = new_event(
        WorkflowCompleted(workflow="refund", outcome=Outcome.SUCCEEDED, output={"refund": 42}),
        workflow_id=uuid.uuid4(),
        tenant=tenant,
        principal=Principal(subject="user-1"),  # may start nothing: see ``_accepted``
    )
    return event.model_dump_json().encode()


def publish(mesh: Mesh, topic: Topic, *values: bytes) -> None:
    """Produce ``values`` on ``topic`` in order, keyed by their workflow id; a completion
    after its request, as intake accepted it (delivery delivers no other)."""

    async def produce() -> None:
        producer = AIOKafkaProducer(**mesh.kafka_options(), acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for value in values:
                key = json.loads(value)["workflow_id"].encode()
                if topic is WORKFLOW_COMPLETED:
                    accepted = _accepted(Envelope[WorkflowCompleted].model_validate_json(value))
                    await producer.send_and_wait(
                        REQUESTS_ACCEPTED.qualified(mesh.prefix), accepted, key=key
                    )
                await producer.send_and_wait(topic.qualified(mesh.prefix), value, key=key)
        finally:
            await producer.stop()

    asyncio.run(produce())


def _accepted(completion: Envelope[WorkflowCompleted]) -> bytes:
    """The request ``completion`` ends, as intake accepted it; a principal that may start
    no workflow, so that routing ends it at once (a rejected completion, which delivery
    finds already delivered)."""
    accepted = RequestAccepted(text="a request", channel=Channel.KAFKA)
    return completion.follow(accepted, causation_id=None).model_dump_json().encode()


def caught_up(mesh: Mesh, topic: Topic) -> bool:
    """Whether delivery's consumer group on ``topic`` has committed everything on it:
    every record so far was handled and its effects are durable. Counted in records a
    read-committed reader finds past the group's commits, not in offsets: results are
    written in Kafka transactions, whose commit markers take offsets no reader is given
    (a group that handled everything can sit one offset short of a partition's end)."""

    async def lag() -> int:
        name = topic.qualified(mesh.prefix)
        admin = AIOKafkaAdminClient(**mesh.kafka_options())
        consumer = AIOKafkaConsumer(**mesh.kafka_options(), isolation_level="read_committed")
        await admin.start()
        await consumer.start()
        try:
            partitions = [TopicPartition(name, p) for p in range(topic.partitions)]
            ends = await consumer.end_offsets(partitions)
            committed = await admin.list_consumer_group_offsets(
                f"{mesh.prefix}delivery.{topic.name}", partitions=partitions
            )
            done = {tp: meta.offset for tp, meta in committed.items() if meta.offset >= 0}
            behind = [tp for tp, end in ends.items() if done.get(tp, 0) < end]
            if not behind:
                return 0
            consumer.assign(behind)
            for tp in behind:
                consumer.seek(tp, done.get(tp, 0))
            unread, deadline = 0, time.monotonic() + 10
            while [tp for tp in behind if await consumer.position(tp) < ends[tp]]:
                assert time.monotonic() < deadline, f"{name} was not read to its end in 10 s"
                batches = await consumer.getmany(timeout_ms=500)
                unread += sum(len(records) for records in batches.values())
            return unread
        finally:
            await consumer.stop()
            await admin.close()

    return asyncio.run(lag()) == 0


def dead_letters_for(mesh: Mesh, webhook_id: str, deadline_s: float) -> list[DeadLetter]:
    """Dead-letter records about ``webhook_id``, once there is one."""

    async def read() -> list[DeadLetter]:
        consumer = AIOKafkaConsumer(
            DEAD_LETTERS.qualified(mesh.prefix),
            **mesh.kafka_options(),
            group_id=f"dlq-reader-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        found: list[DeadLetter] = []
        try:
            async with asyncio.timeout(deadline_s):
                while not found:
                    for records in (await consumer.getmany(timeout_ms=250)).values():
                        letters = [DeadLetter.model_validate_json(r.value) for r in records]
                        found += [
                            letter
                            for letter in letters
                            if letter.errors and letter.errors[0].get("webhook_id") == webhook_id
                        ]
        finally:
            await consumer.stop()
        return found

    return asyncio.run(read())


# -- the tests --------------------------------------------------------------------------


def test_a_registered_webhook_receives_a_signed_result_exactly_once(
    hooks_mesh: Mesh, receiver: Receiver
) -> None:
    webhook = register(
        hooks_mesh,
        receiver,
        tenant=SUBMITTING_TENANT,
        path="/a/support",
        workflows=["support-triage"],
    )

    request_id = submit(
        hooks_mesh,
        "How do I reset my password?",
        "support-triage",
        tenant=SUBMITTING_TENANT,
    )

    [got] = wait_for(lambda: receiver.at("/a/support"), timeout=90, what="the POST")
    result = Envelope[WorkflowResult].model_validate_json(got.body)
    assert (result.workflow_id, result.tenant) == (request_id, SUBMITTING_TENANT)
    assert result.payload.workflow == "support-triage"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers[EVENT_HEADER] == str(result.event_id)
    [delivery] = wait_for(
        lambda: settled(hooks_mesh, webhook, SUBMITTING_TENANT), timeout=30, what="delivered"
    )
    assert got.headers[DELIVERY_HEADER] == delivery["id"]
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == (
        "delivered",
        1,
        204,
    )
    wait_for(lambda: caught_up(hooks_mesh, result_topic("support-triage")), timeout=30)
    assert len(receiver.at("/a/support")) == 1
    assert receiver.bad_signatures == []


def test_a_receiver_failing_twice_gets_the_result_on_the_third_attempt(
    hooks_mesh: Mesh, receiver: Receiver
) -> None:
    tenant = _tenant()
    receiver.scripts["/b/flaky"] = [500, 500, 200]
    webhook = register(hooks_mesh, receiver, tenant=tenant, path="/b/flaky")

    publish(hooks_mesh, WORKFLOW_COMPLETED, completed(tenant))

    [delivery] = wait_for(
        lambda: settled(hooks_mesh, webhook, tenant), timeout=60, what="the delivery to settle"
    )
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == (
        "delivered",
        3,
        200,
    )
    posts = receiver.at("/b/flaky")
    assert [p.answered for p in posts] == [500, 500, 200]
    assert {p.headers[DELIVERY_HEADER] for p in posts} == {delivery["id"]}
    assert len({p.body for p in posts}) == 1
    assert receiver.bad_signatures == []


def test_a_receiver_that_keeps_failing_is_dead_lettered_after_the_last_attempt(
    hooks_mesh: Mesh, receiver: Receiver
) -> None:
    tenant = _tenant()
    receiver.scripts["/c/down"] = [503]
    webhook = register(hooks_mesh, receiver, tenant=tenant, path="/c/down")

    publish(hooks_mesh, WORKFLOW_COMPLETED, completed(tenant))

    [letter] = dead_letters_for(hooks_mesh, webhook["id"], deadline_s=60)
    posts = receiver.at("/c/down")
    assert len(posts) == MAX_ATTEMPTS
    assert letter.service == "delivery"
    assert letter.error_code == "refused"
    assert letter.source_topic == REFUND.qualified(hooks_mesh.prefix)
    assert letter.original_value() == posts[0].body
    assert f"after {MAX_ATTEMPTS} attempts; last: HTTP 503" in letter.error
    reason = letter.errors[0]
    assert (reason["attempts"], reason["last_status"], reason["url"]) == (
        MAX_ATTEMPTS,
        503,
        receiver.url("/c/down"),
    )
    [delivery] = wait_for(lambda: settled(hooks_mesh, webhook, tenant), timeout=30)
    assert (delivery["state"], delivery["attempts"], delivery["id"]) == (
        "dead",
        MAX_ATTEMPTS,
        reason["delivery_id"],
    )


def test_a_duplicated_event_is_never_posted_twice(hooks_mesh: Mesh, receiver: Receiver) -> None:
    tenant = _tenant()
    webhook = register(hooks_mesh, receiver, tenant=tenant, path="/d/once")
    event = completed(tenant)

    publish(hooks_mesh, WORKFLOW_COMPLETED, event, event)
    [first] = wait_for(lambda: receiver.at("/d/once"), timeout=60, what="the first POST")
    # The result itself read again, as after a crash between publishing it and
    # recording it in the ledger: the outbox's unique key absorbs it.
    publish(hooks_mesh, REFUND, first.body)

    wait_for(lambda: caught_up(hooks_mesh, WORKFLOW_COMPLETED), timeout=30, what="completed")
    wait_for(lambda: caught_up(hooks_mesh, REFUND), timeout=30, what="results read")
    [delivery] = wait_for(lambda: settled(hooks_mesh, webhook, tenant), timeout=30)
    assert (delivery["state"], delivery["attempts"]) == ("delivered", 1)
    assert len(receiver.at("/d/once")) == 1


def test_another_tenants_webhook_receives_nothing(hooks_mesh: Mesh, receiver: Receiver) -> None:
    tenant, other = _tenant(), _tenant()
    mine = register(hooks_mesh, receiver, tenant=tenant, path="/e/mine")
    theirs = register(hooks_mesh, receiver, tenant=other, path="/e/theirs")

    publish(hooks_mesh, WORKFLOW_COMPLETED, completed(tenant))

    wait_for(lambda: settled(hooks_mesh, mine, tenant), timeout=60, what="my delivery")
    wait_for(lambda: caught_up(hooks_mesh, REFUND), timeout=30, what="results read")
    assert len(receiver.at("/e/mine")) == 1
    assert receiver.at("/e/theirs") == []
    assert deliveries(hooks_mesh, theirs, other) == []
    # Nor can the other tenant read my webhook or its deliveries.
    foreign = hooks_mesh.bearer(tenant=other, roles=("integrator",))
    url = f"{hooks_mesh.url('delivery')}/v1/webhooks/{mine['id']}/deliveries"
    assert httpx.get(url, headers=foreign, timeout=10).status_code == 404


def test_each_attempt_is_traced_with_the_workflow_id(hooks_mesh: Mesh, receiver: Receiver) -> None:
    tenant = _tenant()
    register(hooks_mesh, receiver, tenant=tenant, path="/f/traced")
    event = completed(tenant)
    workflow_id = json.loads(event)["workflow_id"]

    publish(hooks_mesh, WORKFLOW_COMPLETED, event)

    wait_for(lambda: receiver.at("/f/traced"), timeout=60, what="the POST")
    [got] = receiver.at("/f/traced")
    assert "traceparent" in {k.lower() for k in got.headers}
    spans = wait_for(
        lambda: [
            s
            for s in hooks_mesh.spans()
            if s["name"] == "webhook deliver"
            and s["attributes"].get("pactmesh.workflow_id") == workflow_id
        ],
        timeout=30,
        what="the attempt's span",
    )
    trace_id = spans[0]["context"]["trace_id"]
    assert got.headers["traceparent"].split("-")[1] == trace_id.removeprefix("0x")


def test_destinations_outside_the_allowed_networks_are_refused_and_tokens_never_shown(
    hooks_mesh: Mesh, receiver: Receiver
) -> None:
    """The harness allows loopback (the receiver's address) and nothing else; a token in
    a webhook's query string is in no answer, dead letter or log line."""
    tenant = _tenant()
    auth = hooks_mesh.bearer(tenant=tenant, roles=("integrator",))
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/in",
        f"http://user:pw@127.0.0.1:{receiver.port}/in",
    ):
        refused = httpx.post(
            f"{hooks_mesh.url('delivery')}/v1/webhooks", json={"url": url}, headers=auth, timeout=10
        )
        assert refused.status_code == 422, (url, refused.text)
        assert refused.json()["detail"][0]["loc"] == ["body", "url"]
    receiver.scripts["/f/down?token=s3cret"] = [500]

    webhook = register(hooks_mesh, receiver, tenant=tenant, path="/f/down?token=s3cret")
    publish(hooks_mesh, WORKFLOW_COMPLETED, completed(tenant))

    shown = receiver.url("/f/down?token=redacted")
    assert webhook["url"] == shown
    [letter] = dead_letters_for(hooks_mesh, webhook["id"], deadline_s=60)
    assert len(receiver.at("/f/down?token=s3cret")) == MAX_ATTEMPTS
    assert letter.errors[0]["url"] == shown
    assert "s3cret" not in letter.model_dump_json()
    assert "s3cret" not in json.dumps(deliveries(hooks_mesh, webhook, tenant))
    assert "s3cret" not in hooks_mesh.log("delivery")
