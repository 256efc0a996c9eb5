"""Accepting requests: who may submit, how big, idempotency; record the request and its
event together, then publish, and leave a publish that fails (or whose outcome is
unknown) to the outbox's relay. On both stores, SQLite and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    AuditRequestAccepted,
    Channel,
    RequestAccepted,
    RequestStatus,
    RequestSubmitted,
)
from pactmesh_contracts.topics import REQUESTS_ACCEPTED
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_intake.adapters.store import open_store
from pactmesh_intake.domain.errors import (
    ClaimsAnotherIdentity,
    IdempotencyConflict,
    NotPermitted,
    TooLarge,
)
from pactmesh_intake.domain.intake import (
    IdempotencyKey,
    accept_http,
    accept_inbound,
    check_permitted,
    refusal_audit,
)
from pactmesh_intake.domain.requests import RequestStore, SubmitRequest, Transition, fingerprint
from pactmesh_intake.settings import Settings
from pactmesh_intake.testing import FakePublisher
from pactmesh_kit.auth import load_access_policy
from pactmesh_kit.auth.tokens import AuthError, Identity
from pactmesh_kit.stores.outbox import Relay

PRINCIPAL = Principal(subject="alice", roles=("requester",), scopes=("workflow:refund",))
UPSTREAM = Principal(
    subject="system:crm", roles=("upstream-system",), scopes=("workflow:support-triage",)
)
POLICY = load_access_policy()
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(hours=24)


@pytest.fixture
async def store(store_backend: StoreBackend) -> AsyncIterator[RequestStore]:
    async with open_store(Settings(**store_backend.settings())) as opened:
        yield opened


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


def _submitted(
    workflow_id: uuid.UUID | None = None,
    *,
    text: str = "where is order 4411?",
    principal: Principal = UPSTREAM,
    tenant: str = "acme",
    requested_workflow: str | None = None,
) -> Envelope[RequestSubmitted]:
    event = new_event(
        RequestSubmitted(
            text=text, metadata={"ticket": "T-9"}, requested_workflow=requested_workflow
        ),
        workflow_id=workflow_id or uuid.uuid4(),
        tenant=tenant,
        principal=principal,
    )
    return Envelope[RequestSubmitted].model_validate(event.model_dump())


async def _inbound(
    store: RequestStore,
    publisher: FakePublisher,
    event: Envelope[RequestSubmitted],
    identity: Identity | None = None,
) -> bool:
    """Accept ``event`` sent with a token proving ``identity`` (by default, the very
    tenant and principal its envelope names)."""
    return await accept_inbound(
        store=store,
        publisher=publisher,
        auditor=FakePublisher(),
        policy=POLICY,
        event=event,
        identity=identity or Identity(principal=event.principal, tenant=event.tenant),
        max_bytes=1024,
        now=T0,
    )


async def _http(
    store: RequestStore,
    publisher: FakePublisher,
    body: SubmitRequest,
    *,
    key: str | None = None,
    tenant: str = "acme",
    now: datetime = T0,
) -> uuid.UUID:
    accepted = await accept_http(
        store=store,
        publisher=publisher,
        auditor=FakePublisher(),
        body=body,
        tenant=tenant,
        principal=PRINCIPAL,
        key=None if key is None else IdempotencyKey(key, DAY),
        now=now,
    )
    return accepted.request_id


async def test_accept_http_records_then_publishes(
    store: RequestStore, publisher: FakePublisher
) -> None:
    body = SubmitRequest(text="refund order 4411", requested_workflow="refund", metadata={"k": "v"})

    request_id = await _http(store, publisher, body)

    assert request_id.version == 7
    [event] = publisher.events
    assert event.workflow_id == request_id
    assert (event.tenant, event.principal, event.causation_id) == ("acme", PRINCIPAL, None)
    assert event.payload == RequestAccepted(
        text="refund order 4411",
        channel=Channel.HTTP,
        requested_workflow="refund",
        metadata={"k": "v"},
    )
    view = await store.get(request_id)
    assert view is not None
    assert (view.status, view.channel, view.tenant) == (
        RequestStatus.ACCEPTED,
        Channel.HTTP,
        "acme",
    )


async def test_the_acceptance_is_audited_even_when_the_request_waits_for_the_relay(
    store: RequestStore, publisher: FakePublisher
) -> None:
    auditor = FakePublisher()
    publisher.broken = True

    accepted = await accept_http(
        store=store,
        publisher=publisher,
        auditor=auditor,
        body=SubmitRequest(text="refund order 4411"),
        tenant="acme",
        principal=PRINCIPAL,
        now=T0,
    )

    [audit] = auditor.audits
    assert isinstance(audit.payload, AuditRequestAccepted)
    assert (audit.workflow_id, audit.tenant) == (accepted.request_id, "acme")
    assert audit.payload.text == "refund order 4411"


async def test_accept_http_keeps_the_request_when_publishing_fails(
    store: RequestStore, publisher: FakePublisher
) -> None:
    publisher.broken = True

    request_id = await _http(store, publisher, SubmitRequest(text="hi"))

    [refused] = publisher.refused
    assert refused.workflow_id == request_id
    assert await store.status(request_id) is RequestStatus.ACCEPTED
    assert await _relayed(store, publisher) == [refused]


async def _relayed(store: RequestStore, publisher: FakePublisher) -> list[Envelope[Any]]:
    """What the outbox's relay publishes now (every lease has passed: the requests of
    these tests were written at T0, long ago)."""
    publisher.broken = publisher.losing_acks = False
    published = len(publisher.events)
    relay = Relay(publisher, topic=REQUESTS_ACCEPTED, lease_s=30, interval_s=1)
    await relay.relay(store.outbox)
    assert await relay.relay(store.outbox) == 0  # and only once
    return publisher.events[published:]


async def test_accept_inbound_follows_the_upstream_event(
    store: RequestStore, publisher: FakePublisher
) -> None:
    submitted = _submitted()

    assert await _inbound(store, publisher, submitted) is True

    [event] = publisher.events
    assert event.workflow_id == submitted.workflow_id
    assert event.causation_id == submitted.event_id
    assert event.principal == submitted.principal
    assert event.payload == RequestAccepted(
        text="where is order 4411?", channel=Channel.KAFKA, metadata={"ticket": "T-9"}
    )
    view = await store.get(submitted.workflow_id)
    assert view is not None
    assert (view.channel, view.tenant) == (Channel.KAFKA, "acme")


async def test_a_failed_inbound_publish_is_left_to_the_outbox(
    store: RequestStore, publisher: FakePublisher
) -> None:
    submitted = _submitted()
    publisher.broken = True
    assert await _inbound(store, publisher, submitted) is True
    publisher.broken = False

    # the redelivery finds the request recorded: its event is the outbox's to publish
    assert await _inbound(store, publisher, submitted) is False
    assert publisher.events == []
    [relayed] = await _relayed(store, publisher)
    assert relayed == publisher.refused[0]
    assert (relayed.workflow_id, relayed.causation_id) == (
        submitted.workflow_id,
        submitted.event_id,
    )


async def test_accept_inbound_publishes_nothing_once_the_request_moved_on(
    store: RequestStore, publisher: FakePublisher
) -> None:
    submitted = _submitted()
    await _inbound(store, publisher, submitted)
    await store.record(
        Transition(
            event_id=uuid.uuid4(),
            request_id=submitted.workflow_id,
            status=RequestStatus.ROUTED,
            service="routing",
            at=submitted.occurred_at,
        )
    )

    assert await _inbound(store, publisher, submitted) is False
    assert len(publisher.events) == 1


# -- idempotency over HTTP ------------------------------------------------------------


async def test_the_same_key_and_body_answer_the_first_request_again(
    store: RequestStore, publisher: FakePublisher
) -> None:
    body = SubmitRequest(text="refund order 4411", metadata={"ticket": "T-1"})
    spelled_otherwise = SubmitRequest.model_validate_json(
        '{ "metadata": {"ticket": "T-1"}, "text": "refund order 4411", "requested_workflow": null }'
    )

    first = await _http(store, publisher, body, key="k-1")
    again = await accept_http(
        store=store,
        publisher=publisher,
        auditor=FakePublisher(),
        body=spelled_otherwise,
        tenant="acme",
        principal=PRINCIPAL,
        key=IdempotencyKey("k-1", DAY),
        now=T0 + timedelta(minutes=5),
    )

    assert (again.request_id, again.replayed) == (first, True)
    assert [e.workflow_id for e in publisher.events] == [first]


async def test_the_same_key_with_another_body_is_a_conflict(
    store: RequestStore, publisher: FakePublisher
) -> None:
    first = await _http(store, publisher, SubmitRequest(text="refund order 4411"), key="k-1")

    with pytest.raises(IdempotencyConflict, match=f"already used for request {first}"):
        await _http(store, publisher, SubmitRequest(text="refund order 4412"), key="k-1")

    assert len(publisher.events) == 1
    assert await store.get(first) is not None


async def test_keys_are_scoped_per_tenant(store: RequestStore, publisher: FakePublisher) -> None:
    body = SubmitRequest(text="hello")
    acme = await _http(store, publisher, body, key="k-1", tenant="acme")
    globex = await _http(store, publisher, body, key="k-1", tenant="globex")

    assert acme != globex
    assert len(publisher.events) == 2


async def test_a_key_past_its_retention_starts_a_new_request(
    store: RequestStore, publisher: FakePublisher
) -> None:
    first = await _http(store, publisher, SubmitRequest(text="hello"), key="k-1")
    within = await _http(store, publisher, SubmitRequest(text="hello"), key="k-1", now=T0 + DAY)
    after = await _http(
        store,
        publisher,
        SubmitRequest(text="other"),
        key="k-1",
        now=T0 + DAY + timedelta(seconds=1),
    )

    assert within == first
    assert after != first
    assert [e.workflow_id for e in publisher.events] == [first, after]


async def test_concurrent_duplicates_resolve_to_one_request(
    store: RequestStore, publisher: FakePublisher
) -> None:
    body = SubmitRequest(text="hello")

    ids = await asyncio.gather(*(_http(store, publisher, body, key="k-race") for _ in range(20)))

    assert len(set(ids)) == 1
    assert [e.workflow_id for e in publisher.events] == [ids[0]]
    assert await store.get(ids[0]) is not None


async def test_an_unacknowledged_publish_keeps_the_key_and_is_republished_as_is(
    store: RequestStore, publisher: FakePublisher
) -> None:
    """The broker wrote the request but its acknowledgement timed out: the client's
    retry with the same key gets the same request, and the relay republishes the same
    event, so downstream (deduplicating by workflow id) runs one workflow."""
    publisher.losing_acks = True
    first = await _http(store, publisher, SubmitRequest(text="hello"), key="k-1")
    publisher.losing_acks = False

    retried = await _http(store, publisher, SubmitRequest(text="hello"), key="k-1")

    assert retried == first
    [written] = publisher.events
    assert await _relayed(store, publisher) == [written]
    assert {e.workflow_id for e in publisher.events} == {first}
    assert {e.event_id for e in publisher.events} == {written.event_id}


async def test_a_published_request_is_not_relayed_again(
    store: RequestStore, publisher: FakePublisher
) -> None:
    relay = Relay(publisher, topic=REQUESTS_ACCEPTED, lease_s=30, interval_s=1)
    request_id = await _http(store, relay, SubmitRequest(text="hello"))

    assert await relay.relay(store.outbox) == 0
    assert [e.workflow_id for e in publisher.events] == [request_id]


def test_fingerprints_ignore_spelling_and_see_every_field() -> None:
    base = SubmitRequest(text="hello", metadata={"a": "1", "b": "2"})
    assert fingerprint(base) == fingerprint(
        SubmitRequest.model_validate_json('{"metadata":{"b":"2","a":"1"},"text":"hello"}')
    )
    assert fingerprint(base) == fingerprint(
        RequestSubmitted(text="hello", metadata={"a": "1", "b": "2"})
    )
    others = [
        SubmitRequest(text="hello!", metadata={"a": "1", "b": "2"}),
        SubmitRequest(text="hello", metadata={"a": "1"}),
        SubmitRequest(text="hello", metadata={"a": "1", "b": "2"}, requested_workflow="refund"),
    ]
    assert len({fingerprint(base), *(fingerprint(o) for o in others)}) == 4


# -- who may submit -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("principal", "workflow", "refusal"),
    [
        (Principal(subject="r", roles=("reviewer",)), None, "'requests:submit' is not granted"),
        (Principal(subject="u", roles=("upstream-system",)), None, "may not start any workflow"),
        (Principal(subject="a", roles=("requester",)), "refund", "may not start workflow 'refund'"),
        (
            Principal(subject="u", roles=("upstream-system",), scopes=("workflow:procurement",)),
            "refund",
            "may not start workflow 'refund'",
        ),
    ],
)
def test_who_may_not_submit(principal: Principal, workflow: str | None, refusal: str) -> None:
    with pytest.raises(NotPermitted, match=refusal):
        check_permitted(policy=POLICY, principal=principal, requested_workflow=workflow)


@pytest.mark.parametrize(
    ("principal", "workflow"),
    [
        (Principal(subject="a", roles=("requester",)), None),
        (Principal(subject="a", roles=("requester",)), "support-triage"),
        (PRINCIPAL, "refund"),
        (UPSTREAM, None),
    ],
)
def test_who_may_submit(principal: Principal, workflow: str | None) -> None:
    check_permitted(policy=POLICY, principal=principal, requested_workflow=workflow)


# -- the inbound topic's refusals -----------------------------------------------------


async def test_inbound_refuses_a_principal_without_the_workflow(
    store: RequestStore, publisher: FakePublisher
) -> None:
    event = _submitted(requested_workflow="refund")

    with pytest.raises(NotPermitted, match="may not start workflow 'refund'"):
        await _inbound(store, publisher, event)

    assert publisher.events == []
    assert await store.get(event.workflow_id) is None


@pytest.mark.parametrize(
    ("token", "claim"),
    [
        (Identity(principal=UPSTREAM, tenant="globex"), "claims tenant 'acme'"),
        (
            Identity(
                principal=UPSTREAM.model_copy(update={"subject": "system:erp"}), tenant="acme"
            ),
            "claims principal",
        ),
        (
            Identity(principal=UPSTREAM.model_copy(update={"scopes": ()}), tenant="acme"),
            "claims principal",
        ),
    ],
    ids=["another-tenant", "another-subject", "a-scope-the-token-lacks"],
)
async def test_inbound_refuses_an_envelope_claiming_what_its_token_does_not_prove(
    store: RequestStore, publisher: FakePublisher, token: Identity, claim: str
) -> None:
    event = _submitted()

    with pytest.raises(ClaimsAnotherIdentity, match=claim) as refused:
        await _inbound(store, publisher, event, token)

    assert publisher.events == []
    assert await store.get(event.workflow_id) is None
    audit = refusal_audit(event, refused.value, token)
    assert audit is not None
    assert (audit.payload.service, audit.payload.action) == ("intake", "inbound.refused")
    assert audit.payload.detail["code"] == "identity_mismatch"
    assert audit.payload.detail["claimed"]["tenant"] == "acme"
    assert audit.payload.detail["token"]["tenant"] == token.tenant


async def test_inbound_acts_for_the_token_whatever_order_its_roles_come_in(
    store: RequestStore, publisher: FakePublisher
) -> None:
    scopes = UPSTREAM.scopes
    claimed = Principal(subject="system:crm", roles=("a-role", "upstream-system"), scopes=scopes)
    proven = Principal(subject="system:crm", roles=("upstream-system", "a-role"), scopes=scopes)
    event = _submitted(principal=claimed)

    assert await _inbound(store, publisher, event, Identity(principal=proven, tenant="acme"))

    [accepted] = publisher.events
    assert accepted.principal == proven


def test_only_refusals_about_who_asks_are_audited() -> None:
    event = _submitted()
    assert refusal_audit(event, TooLarge("big"), None) is None
    audit = refusal_audit(event, AuthError("invalid_token", "token expired"), None)
    assert audit is not None
    assert audit.payload.detail["token"] is None
    assert audit.payload.detail["reason"] == "token expired"


async def test_inbound_refuses_a_request_over_the_size_limit(
    store: RequestStore, publisher: FakePublisher
) -> None:
    event = _submitted(text="x" * 1024)

    with pytest.raises(TooLarge, match="at most 1024 are accepted"):
        await _inbound(store, publisher, event)

    assert publisher.events == []


@pytest.mark.parametrize(
    "changed",
    [{"text": "where is order 4412?"}, {"tenant": "globex"}],
    ids=["another-request", "another-tenant"],
)
async def test_inbound_refuses_a_workflow_id_reused_for_another_request(
    store: RequestStore, publisher: FakePublisher, changed: dict[str, str]
) -> None:
    first = _submitted()
    await _inbound(store, publisher, first)

    with pytest.raises(IdempotencyConflict, match="already submitted with a different request"):
        await _inbound(store, publisher, _submitted(first.workflow_id, **changed))

    assert len(publisher.events) == 1
    view = await store.get(first.workflow_id)
    assert view is not None
    assert view.tenant == "acme"


async def test_inbound_refuses_a_workflow_id_taken_over_http(
    store: RequestStore, publisher: FakePublisher
) -> None:
    request_id = await _http(store, publisher, SubmitRequest(text="where is order 4411?"))

    with pytest.raises(IdempotencyConflict):
        await _inbound(store, publisher, _submitted(request_id))
