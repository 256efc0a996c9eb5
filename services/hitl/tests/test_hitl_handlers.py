"""The hitl subscribers on FastStream's in-memory broker, with a real review store."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import Outcome, ReviewRequested, WorkflowCompleted
from pactmesh_contracts.topics import REVIEWS_REQUESTED, WORKFLOW_COMPLETED, Topic
from pactmesh_hitl import handlers
from pactmesh_hitl.adapters.sqlite_store import SqliteReviewStore, open_store
from pactmesh_hitl.domain.reviews import ReviewState
from pactmesh_hitl.settings import Settings
from pactmesh_kit.broker import encode, make_broker

SETTINGS = Settings(topic_prefix="hitl-test.")


@pytest.fixture
async def hitl(tmp_path: Path) -> AsyncIterator[tuple[KafkaBroker, SqliteReviewStore]]:
    broker = make_broker(SETTINGS, tracer_provider=None)
    runtime = handlers.Runtime(settings=SETTINGS)
    handlers.register(broker, runtime)
    async with open_store(tmp_path / "hitl.sqlite3") as store, TestKafkaBroker(broker):
        runtime.store = store
        yield broker, store


async def _send(broker: KafkaBroker, topic: Topic, event: Envelope[Any]) -> None:
    await broker.publish(encode(event), topic.qualified(SETTINGS.topic_prefix), key=event.key)


def _event(payload: Any, workflow_id: uuid.UUID) -> Envelope[Any]:
    return new_event(
        payload, workflow_id=workflow_id, tenant="acme", principal=Principal(subject="user-1")
    )


async def test_requested_review_is_queued_then_withdrawn_when_the_workflow_ends(
    hitl: tuple[KafkaBroker, SqliteReviewStore],
) -> None:
    broker, store = hitl
    workflow_id = uuid.uuid4()
    request = ReviewRequested(
        review_id=uuid.uuid4(),
        workflow="procurement",
        rule="procurement.amount_over_threshold",
        summary="PO-1042 over the limit",
        proposed_action={"po": "PO-1042"},
        required_role="approver",
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    requested = _event(request, workflow_id)

    await _send(broker, REVIEWS_REQUESTED, requested)
    await _send(broker, REVIEWS_REQUESTED, requested)  # redelivery

    [review] = await store.pending(tenant="acme", limit=10, offset=0)
    assert (review.review_id, review.workflow_id) == (request.review_id, workflow_id)
    assert review.state is ReviewState.PENDING
    assert review.requested_at == requested.occurred_at

    done = WorkflowCompleted(workflow="procurement", outcome=Outcome.FAILED, error="timeout")
    await _send(broker, WORKFLOW_COMPLETED, _event(done, workflow_id))

    assert await store.pending(tenant=None, limit=10, offset=0) == []
