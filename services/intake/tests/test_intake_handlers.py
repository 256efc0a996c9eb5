"""Intake's subscribers on FastStream's in-memory broker, with a real request store: the
inbound topic refuses (to the dead-letter topic) what HTTP would answer with a 4xx."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    AuditRecorded,
    Channel,
    DeadLetter,
    Outcome,
    RequestAccepted,
    RequestStatus,
    RequestSubmitted,
    WorkflowProgress,
    WorkflowResult,
    WorkflowToken,
)
from pactmesh_contracts.topics import (
    AUDIT,
    DEAD_LETTERS,
    REQUESTS_ACCEPTED,
    REQUESTS_INBOUND,
    WORKFLOW_PROGRESS,
    Topic,
    result_topic,
)
from pactmesh_intake import handlers
from pactmesh_intake.adapters.audit_store import open_audit_store
from pactmesh_intake.adapters.sqlite_store import SqliteRequestStore, open_sqlite_store
from pactmesh_intake.runtime import Runtime
from pactmesh_intake.settings import Settings
from pactmesh_kit.auth.devissuer import DevIssuer
from pactmesh_kit.auth.records import authorization
from pactmesh_kit.kafka import Kafka, encode
from pactmesh_kit.kafka.testing import collect

SETTINGS = Settings(topic_prefix="intake-test.", max_body_bytes=2048, handler_max_attempts=1)
UPSTREAM = Principal(
    subject="system:crm", roles=("upstream-system",), scopes=("workflow:support-triage",)
)


@dataclass
class Intake:
    broker: KafkaBroker
    store: SqliteRequestStore
    runtime: Runtime
    issuer: DevIssuer
    accepted: list[Envelope[RequestAccepted]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    audits: list[Envelope[AuditRecorded]] = field(default_factory=list)

    def token(self, principal: Principal, tenant: str = "acme", ttl_s: int = 600) -> str:
        """A token of the mesh's issuer for ``principal`` in ``tenant``."""
        return self.issuer.mint(
            subject=principal.subject,
            tenant=tenant,
            roles=principal.roles,
            scopes=principal.scopes,
            ttl_s=ttl_s,
        )

    async def send(self, topic: Topic, event: Envelope[Any], *, token: str | None = None) -> bytes:
        """Publish ``event``; on the inbound topic with a bearer token, by default one
        proving the envelope's own tenant and principal."""
        body = encode(event)
        headers = {}
        if topic is REQUESTS_INBOUND:
            name, value = authorization(token or self.token(event.principal, event.tenant))
            headers[name] = value.decode()
        await self.broker.publish(
            body, topic.qualified(SETTINGS.topic_prefix), key=event.key, headers=headers
        )
        return body


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[Intake]:
    settings = SETTINGS.model_copy(update={"data_dir": tmp_path})
    kafka = Kafka(settings, tracer_provider=None)
    runtime = Runtime(
        settings=settings,
        publisher=kafka.publisher(REQUESTS_ACCEPTED),
        auditor=kafka.publisher(AUDIT),
    )
    handlers.register(kafka, runtime)
    accepted: list[Envelope[RequestAccepted]] = collect(kafka, REQUESTS_ACCEPTED)
    dead: list[DeadLetter] = collect(kafka, DEAD_LETTERS)
    audits: list[Envelope[AuditRecorded]] = collect(kafka, AUDIT)
    issuer = DevIssuer.for_settings(settings)
    async with (
        open_sqlite_store(tmp_path / "intake.sqlite3") as store,
        open_audit_store(data_dir=tmp_path, postgres_url=None) as audit,
        TestKafkaBroker(kafka.broker),
    ):
        runtime.store, runtime.audit = store, audit
        yield Intake(kafka.broker, store, runtime, issuer, accepted, dead, audits)


def _event(payload: Any, workflow_id: uuid.UUID, principal: Principal = UPSTREAM) -> Envelope[Any]:
    return new_event(payload, workflow_id=workflow_id, tenant="acme", principal=principal)


async def test_inbound_request_is_accepted_and_progress_recorded(intake: Intake) -> None:
    workflow_id = uuid.uuid4()
    submitted = _event(RequestSubmitted(text="where is order 4411?"), workflow_id)

    await intake.send(REQUESTS_INBOUND, submitted)

    [accepted] = intake.accepted
    assert (accepted.workflow_id, accepted.causation_id) == (workflow_id, submitted.event_id)
    assert accepted.payload.channel is Channel.KAFKA
    assert accepted.principal == UPSTREAM
    # The timeline's first step, published and kept by intake's own audit consumer.
    [step] = await intake.runtime.require_audit().events(workflow_id)
    assert step.type == "audit.request.accepted.v1"
    assert step.causation_id == accepted.event_id

    routed = _event(
        WorkflowProgress(status=RequestStatus.ROUTED, service="routing", workflow="support-triage"),
        workflow_id,
    )
    await intake.send(WORKFLOW_PROGRESS, routed)
    await intake.send(WORKFLOW_PROGRESS, routed)  # redelivery is recorded once

    view = await intake.store.get(workflow_id)
    assert view is not None
    assert (view.status, view.workflow) == (RequestStatus.ROUTED, "support-triage")
    assert [h.status for h in view.history] == [RequestStatus.ACCEPTED, RequestStatus.ROUTED]

    await intake.send(REQUESTS_INBOUND, submitted)  # a late redelivery changes nothing
    assert len(intake.accepted) == 1
    assert intake.dead == []


@pytest.mark.parametrize(
    ("principal", "payload", "reason"),
    [
        (
            Principal(subject="system:crm", roles=("reviewer",)),
            RequestSubmitted(text="hello"),
            "forbidden (HTTP 403 equivalent): 'requests:submit' is not granted to 'system:crm'",
        ),
        (
            Principal(subject="system:crm", roles=("upstream-system",)),
            RequestSubmitted(text="hello"),
            "forbidden (HTTP 403 equivalent): 'system:crm' may not start any workflow",
        ),
        (
            UPSTREAM,
            RequestSubmitted(text="refund order 4411", requested_workflow="refund"),
            "forbidden (HTTP 403 equivalent): 'system:crm' may not start workflow 'refund'",
        ),
        (
            UPSTREAM,
            RequestSubmitted(text="x" * 2048),
            "too_large (HTTP 413 equivalent): the request is 2099 bytes; at most 2048",
        ),
    ],
    ids=["no-submit-capability", "no-workflow-at-all", "workflow-not-granted", "too-large"],
)
async def test_what_http_would_refuse_is_dead_lettered(
    intake: Intake, principal: Principal, payload: RequestSubmitted, reason: str
) -> None:
    event = _event(payload, uuid.uuid4(), principal)

    sent = await intake.send(REQUESTS_INBOUND, event)

    [letter] = intake.dead
    assert letter.error_code == "refused"
    assert letter.error.startswith(reason)
    assert base64.b64decode(letter.original_value_b64) == sent
    assert letter.source_topic == REQUESTS_INBOUND.qualified(SETTINGS.topic_prefix)
    assert intake.accepted == []
    assert await intake.store.get(event.workflow_id) is None


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (None, "invalid_token (HTTP 401 equivalent): no bearer token"),
        ("not-a-jwt", "invalid_token (HTTP 401 equivalent): malformed token"),
        ("expired", "invalid_token (HTTP 401 equivalent): token expired"),
        ("another-tenant", "identity_mismatch (HTTP 403 equivalent): the envelope claims"),
        ("fewer-scopes", "identity_mismatch (HTTP 403 equivalent): the envelope claims principal"),
    ],
)
async def test_an_inbound_request_without_a_token_proving_its_envelope_is_refused(
    intake: Intake, token: str | None, reason: str
) -> None:
    """The envelope's self-claimed principal (a refund scope) is never taken on trust."""
    claimed = UPSTREAM.model_copy(update={"scopes": ("workflow:refund",)})
    event = _event(RequestSubmitted(text="refund order 4411"), uuid.uuid4(), claimed)
    tokens = {
        "expired": intake.token(claimed, ttl_s=-120),
        "another-tenant": intake.token(claimed, tenant="globex"),
        "fewer-scopes": intake.token(UPSTREAM.model_copy(update={"scopes": ()})),
    }
    body = encode(event)
    headers = {} if token is None else {"authorization": f"Bearer {tokens.get(token, token)}"}

    await intake.broker.publish(
        body, REQUESTS_INBOUND.qualified(SETTINGS.topic_prefix), key=event.key, headers=headers
    )

    [letter] = intake.dead
    assert letter.error.startswith(reason)
    assert base64.b64decode(letter.original_value_b64) == body
    if token is not None:
        assert letter.original_headers["authorization"] == "[redacted]"
    assert intake.accepted == []
    assert await intake.store.get(event.workflow_id) is None
    [audit] = intake.audits
    assert (audit.payload.service, audit.payload.action) == ("intake", "inbound.refused")
    assert audit.payload.detail["claimed"]["principal"]["scopes"] == ["workflow:refund"]


async def test_a_workflow_id_reused_for_another_request_is_dead_lettered(intake: Intake) -> None:
    workflow_id = uuid.uuid4()
    await intake.send(REQUESTS_INBOUND, _event(RequestSubmitted(text="order 4411?"), workflow_id))

    other = await intake.send(
        REQUESTS_INBOUND, _event(RequestSubmitted(text="order 4412?"), workflow_id)
    )

    [letter] = intake.dead
    assert letter.error.startswith("idempotency_conflict (HTTP 409 equivalent): workflow id")
    assert base64.b64decode(letter.original_value_b64) == other
    [accepted] = intake.accepted
    assert accepted.payload.text == "order 4411?"


async def test_results_are_kept_for_requests_submitted_here(intake: Intake) -> None:
    workflow_id = uuid.uuid4()
    await intake.send(REQUESTS_INBOUND, _event(RequestSubmitted(text="order 4411?"), workflow_id))
    result = WorkflowResult(
        workflow="support-triage", outcome=Outcome.SUCCEEDED, output={"reply": "on its way"}
    )
    topic = result_topic("support-triage")

    await intake.send(topic, _event(result, workflow_id))
    await intake.send(topic, _event(result, uuid.uuid4()))  # not ours: nothing kept

    kept = await intake.store.result(workflow_id)
    assert kept is not None
    assert (kept.outcome, kept.output) == (Outcome.SUCCEEDED, {"reply": "on its way"})
    assert intake.dead == []


async def test_live_events_reach_the_followers_of_their_request_only(intake: Intake) -> None:
    followed, other = uuid.uuid4(), uuid.uuid4()
    token = _event(WorkflowToken(seq=0, text="Hello", step="draft", final=False), followed)
    elsewhere = _event(WorkflowToken(seq=0, text="Hi", step="draft", final=False), other)

    with intake.runtime.live.follow(followed) as follower:
        await intake.send(WORKFLOW_PROGRESS, elsewhere)
        await intake.send(WORKFLOW_PROGRESS, token)
        assert follower.queue.qsize() == 1
        assert follower.queue.get_nowait() == token


def test_the_live_groups_are_wanted_while_any_client_follows_a_request_here(
    intake: Intake,
) -> None:
    live, first, second = intake.runtime.live, uuid.uuid4(), uuid.uuid4()
    assert not live.wanted.is_set()
    with live.follow(first):
        assert live.wanted.is_set()
        with live.follow(second), live.follow(second):
            assert live.wanted.is_set()
        assert live.wanted.is_set()  # the first request is still followed
    assert not live.wanted.is_set()
