"""Intake's subscribers on FastStream's in-memory broker, with a real request store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    Channel,
    RequestAccepted,
    RequestStatus,
    RequestSubmitted,
    WorkflowProgress,
    WorkflowToken,
)
from pactmesh_contracts.topics import REQUESTS_ACCEPTED, REQUESTS_INBOUND, WORKFLOW_PROGRESS, Topic
from pactmesh_intake import handlers
from pactmesh_intake.adapters.sqlite_store import SqliteRequestStore, open_store
from pactmesh_intake.runtime import Runtime
from pactmesh_intake.settings import Settings
from pactmesh_kit.broker import EventPublisher, encode, make_broker, subscriber

SETTINGS = Settings(topic_prefix="intake-test.")


@dataclass
class Intake:
    broker: KafkaBroker
    store: SqliteRequestStore
    runtime: Runtime
    accepted: list[Envelope[RequestAccepted]] = field(default_factory=list)

    async def send(self, topic: Topic, event: Envelope[Any]) -> None:
        await self.broker.publish(
            encode(event), topic.qualified(SETTINGS.topic_prefix), key=event.key
        )


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[Intake]:
    broker = make_broker(SETTINGS, tracer_provider=None)
    runtime = Runtime(
        settings=SETTINGS, publisher=EventPublisher(broker, SETTINGS, produces=[REQUESTS_ACCEPTED])
    )
    handlers.register(broker, runtime)
    accepted: list[Envelope[RequestAccepted]] = []

    @subscriber(broker, REQUESTS_ACCEPTED, SETTINGS)
    async def on_accepted(event: Envelope[RequestAccepted]) -> None:
        accepted.append(event)

    async with open_store(tmp_path / "intake.sqlite3") as store, TestKafkaBroker(broker):
        runtime.store = store
        yield Intake(broker, store, runtime, accepted)


def _event(payload: Any, workflow_id: uuid.UUID) -> Envelope[Any]:
    return new_event(
        payload, workflow_id=workflow_id, tenant="acme", principal=Principal(subject="crm")
    )


async def test_inbound_request_is_accepted_and_progress_recorded(intake: Intake) -> None:
    workflow_id = uuid.uuid4()
    submitted = _event(RequestSubmitted(text="where is order 4411?"), workflow_id)

    await intake.send(REQUESTS_INBOUND, submitted)

    [accepted] = intake.accepted
    assert (accepted.workflow_id, accepted.causation_id) == (workflow_id, submitted.event_id)
    assert accepted.payload.channel is Channel.KAFKA

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


async def test_live_events_reach_the_followers_of_their_request_only(intake: Intake) -> None:
    followed, other = uuid.uuid4(), uuid.uuid4()
    token = _event(WorkflowToken(seq=0, text="Hello", step="draft", final=False), followed)
    elsewhere = _event(WorkflowToken(seq=0, text="Hi", step="draft", final=False), other)

    with intake.runtime.live.follow(followed) as follower:
        await intake.send(WORKFLOW_PROGRESS, elsewhere)
        await intake.send(WORKFLOW_PROGRESS, token)
        assert follower.queue.qsize() == 1
        assert follower.queue.get_nowait() == token
