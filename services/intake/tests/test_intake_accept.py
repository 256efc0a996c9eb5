"""Accepting requests: record first, publish, and undo the record if publishing fails."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    Channel,
    RequestAccepted,
    RequestStatus,
    RequestSubmitted,
)
from pactmesh_intake.adapters.sqlite_store import SqliteRequestStore, open_store
from pactmesh_intake.domain.intake import accept_http, accept_inbound
from pactmesh_intake.domain.requests import SubmitRequest, Transition

PRINCIPAL = Principal(subject="anonymous", roles=("requester",))


class FakePublisher:
    """Collects published events; fails every publish while ``broken`` is set."""

    def __init__(self) -> None:
        self.events: list[Envelope[Any]] = []
        self.refused: list[Envelope[Any]] = []
        self.broken = False

    async def publish(self, event: Envelope[Any]) -> None:
        if self.broken:
            self.refused.append(event)
            raise ConnectionError("kafka unreachable")
        self.events.append(event)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteRequestStore]:
    async with open_store(tmp_path / "intake.sqlite3") as opened:
        yield opened


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


def _submitted(workflow_id: uuid.UUID | None = None) -> Envelope[RequestSubmitted]:
    event = new_event(
        RequestSubmitted(text="where is order 4411?", metadata={"ticket": "T-9"}),
        workflow_id=workflow_id or uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="upstream-crm"),
    )
    return Envelope[RequestSubmitted].model_validate(event.model_dump())


async def test_accept_http_records_then_publishes(
    store: SqliteRequestStore, publisher: FakePublisher
) -> None:
    body = SubmitRequest(text="refund order 4411", requested_workflow="refund", metadata={"k": "v"})

    request_id = await accept_http(
        store=store, publisher=publisher, body=body, tenant="acme", principal=PRINCIPAL
    )

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


async def test_accept_http_forgets_the_record_when_publishing_fails(
    store: SqliteRequestStore, publisher: FakePublisher
) -> None:
    publisher.broken = True

    with pytest.raises(ConnectionError):
        await accept_http(
            store=store,
            publisher=publisher,
            body=SubmitRequest(text="hi"),
            tenant="acme",
            principal=PRINCIPAL,
        )

    [refused] = publisher.refused
    assert await store.get(refused.workflow_id) is None
    assert await store.status(refused.workflow_id) is None


async def test_accept_inbound_follows_the_upstream_event(
    store: SqliteRequestStore, publisher: FakePublisher
) -> None:
    submitted = _submitted()

    assert await accept_inbound(store=store, publisher=publisher, event=submitted) is True

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


async def test_accept_inbound_republishes_while_still_accepted(
    store: SqliteRequestStore, publisher: FakePublisher
) -> None:
    submitted = _submitted()
    publisher.broken = True
    with pytest.raises(ConnectionError):
        await accept_inbound(store=store, publisher=publisher, event=submitted)
    publisher.broken = False

    # the redelivery finds the record and publishes after all
    assert await accept_inbound(store=store, publisher=publisher, event=submitted) is True
    assert await accept_inbound(store=store, publisher=publisher, event=submitted) is True
    assert [e.workflow_id for e in publisher.events] == [submitted.workflow_id] * 2


async def test_accept_inbound_publishes_nothing_once_the_request_moved_on(
    store: SqliteRequestStore, publisher: FakePublisher
) -> None:
    submitted = _submitted()
    await accept_inbound(store=store, publisher=publisher, event=submitted)
    await store.record(
        Transition(
            event_id=uuid.uuid4(),
            request_id=submitted.workflow_id,
            status=RequestStatus.ROUTED,
            service="routing",
            at=submitted.occurred_at,
        )
    )

    assert await accept_inbound(store=store, publisher=publisher, event=submitted) is False
    assert len(publisher.events) == 1
