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
from pactmesh_contracts.topics import REVIEWS_DECIDED, REVIEWS_REQUESTED, WORKFLOW_COMPLETED, Topic
from pactmesh_hitl import handlers
from pactmesh_hitl.adapters.sqlite_store import SqliteReviewStore, open_store
from pactmesh_hitl.domain.reviews import ListQuery, Review, ReviewPriority, ReviewState
from pactmesh_hitl.runtime import Runtime
from pactmesh_hitl.settings import Settings
from pactmesh_kit.kafka import Kafka, encode

SETTINGS = Settings(topic_prefix="hitl-test.")


@pytest.fixture
async def hitl(tmp_path: Path) -> AsyncIterator[tuple[KafkaBroker, SqliteReviewStore]]:
    kafka = Kafka(SETTINGS, tracer_provider=None)
    runtime = Runtime(settings=SETTINGS, publisher=kafka.publisher(REVIEWS_DECIDED))
    handlers.register(kafka, runtime)
    async with open_store(tmp_path / "hitl.sqlite3") as store, TestKafkaBroker(kafka.broker):
        runtime.store = store
        yield kafka.broker, store


async def _send(broker: KafkaBroker, topic: Topic, event: Envelope[Any]) -> None:
    await broker.publish(encode(event), topic.qualified(SETTINGS.topic_prefix), key=event.key)


def _event(payload: Any, workflow_id: uuid.UUID) -> Envelope[Any]:
    return new_event(
        payload,
        workflow_id=workflow_id,
        tenant="acme",
        principal=Principal(subject="user-1", roles=("requester",)),
    )


def _request(attempt: int = 0) -> ReviewRequested:
    return ReviewRequested(
        review_id=uuid.uuid4(),
        workflow="procurement",
        rule="procurement.amount_over_threshold",
        summary="PO-1042 over the limit",
        action_type="purchase_order.v1",
        proposed_action={
            "action_type": "purchase_order.v1",
            "vendor": "Acme Supplies",
            "items": [{"description": "laptops", "quantity": 12, "unit_price": 1000.0}],
            "amount": 12000.0,
            "currency": "USD",
        },
        required_role="finance-director" if attempt else "procurement-manager",
        expires_at=datetime.now(UTC) + timedelta(days=1),
        attempt=attempt,
        priority=ReviewPriority.HIGH,
    )


async def _still_pending(store: SqliteReviewStore, review_id: uuid.UUID) -> bool:
    """Whether the review is stored and pending."""
    review = await store.get(review_id)
    return review is not None and review.state is ReviewState.PENDING


async def _pending(store: SqliteReviewStore) -> list[Review]:
    return await store.find(ListQuery(tenant="acme"), now=datetime.now(UTC))


async def test_requested_review_is_stored_once_then_withdrawn_when_the_workflow_ends(
    hitl: tuple[KafkaBroker, SqliteReviewStore],
) -> None:
    broker, store = hitl
    workflow_id, request = uuid.uuid4(), _request()
    requested = _event(request, workflow_id)

    await _send(broker, REVIEWS_REQUESTED, requested)
    await _send(broker, REVIEWS_REQUESTED, requested)  # redelivery

    assert await _still_pending(store, request.review_id)
    done = WorkflowCompleted(workflow="procurement", outcome=Outcome.FAILED, error="timeout")
    await _send(broker, WORKFLOW_COMPLETED, _event(done, workflow_id))
    assert not await _still_pending(store, request.review_id)


async def test_completion_of_another_workflow_withdraws_nothing(
    hitl: tuple[KafkaBroker, SqliteReviewStore],
) -> None:
    broker, store = hitl
    request = _request()
    await _send(broker, REVIEWS_REQUESTED, _event(request, uuid.uuid4()))

    done = WorkflowCompleted(workflow="procurement", outcome=Outcome.SUCCEEDED)
    await _send(broker, WORKFLOW_COMPLETED, _event(done, uuid.uuid4()))

    assert await _still_pending(store, request.review_id)


async def test_requested_review_is_queued_with_everything_a_decision_needs(
    hitl: tuple[KafkaBroker, SqliteReviewStore],
) -> None:
    broker, store = hitl
    workflow_id, request = uuid.uuid4(), _request(attempt=1)
    requested = _event(request, workflow_id)

    await _send(broker, REVIEWS_REQUESTED, requested)
    await _send(broker, REVIEWS_REQUESTED, requested)  # redelivery

    [review] = await _pending(store)
    assert review == Review(
        review_id=request.review_id,
        workflow_id=workflow_id,
        workflow="procurement",
        tenant="acme",
        rule=request.rule,
        summary=request.summary,
        action_type="purchase_order.v1",
        proposed_action=dict(request.proposed_action),
        required_role="finance-director",
        priority=ReviewPriority.HIGH,
        expires_at=request.expires_at,
        state=ReviewState.PENDING,
        requested_at=requested.occurred_at,
        attempt=1,
        principal=requested.principal,
        request_event_id=requested.event_id,
    )

    done = WorkflowCompleted(workflow="procurement", outcome=Outcome.FAILED, error="timeout")
    await _send(broker, WORKFLOW_COMPLETED, _event(done, workflow_id))

    assert await _pending(store) == []
    assert [h.action for h in await store.history(request.review_id)] == ["requested", "withdrawn"]
