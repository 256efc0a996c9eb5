"""Shared fixtures for the hitl tests: reviews to store and a fake publisher.

Test modules are imported with ``--import-mode=importlib`` (no ``import conftest``), so
the helpers reach them as fixtures: ``reviews`` (the helper namespace) and ``publisher``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import ReviewDecided
from pactmesh_contracts.topics import REVIEWS_DECIDED
from pactmesh_hitl.domain.reviews import Review, ReviewPriority, ReviewState, ReviewStore

NOW = datetime.now(UTC)
ORDER: dict[str, Any] = {
    "action_type": "purchase_order.v1",
    "vendor": "Acme Supplies",
    "items": [{"description": "laptops", "quantity": 12, "unit_price": 1000.0}],
    "amount": 12000.0,
    "currency": "USD",
}


class FakePublisher:
    """Collects events, after checking each one survives the wire; fails while ``broken``."""

    def __init__(self) -> None:
        self.events: list[Envelope[Any]] = []
        self.broken = False

    async def publish(self, event: Envelope[Any]) -> None:
        if self.broken:
            raise ConnectionError("kafka unreachable")
        self.events.append(REVIEWS_DECIDED.adapter.validate_json(event.model_dump_json()))

    @property
    def decisions(self) -> list[ReviewDecided]:
        return [e.payload for e in self.events]


def make_review(
    *,
    tenant: str = "acme",
    workflow: str = "procurement",
    minutes_ago: float = 60,
    priority: ReviewPriority = ReviewPriority.NORMAL,
    action_type: str = "purchase_order.v1",
    proposed_action: dict[str, Any] = ORDER,
    expires_at: datetime | None = None,
    required_role: str = "procurement-manager",
    workflow_id: uuid.UUID | None = None,
    attempt: int = 0,
    rule: str = "procurement.amount_over_threshold",
) -> Review:
    """A pending review requested ``minutes_ago`` before NOW."""
    return Review(
        review_id=uuid.uuid4(),
        workflow_id=workflow_id or uuid.uuid4(),
        workflow=workflow,
        tenant=tenant,
        rule=rule,
        summary="Purchase order above the approval threshold",
        action_type=action_type,
        proposed_action=proposed_action,
        required_role=required_role,
        priority=priority,
        expires_at=expires_at or NOW + timedelta(hours=4),
        state=ReviewState.PENDING,
        requested_at=NOW - timedelta(minutes=minutes_ago),
        attempt=attempt,
        request_event_id=uuid.uuid4(),
    )


async def stored(store: ReviewStore, **fields: Any) -> Review:
    """``make_review(**fields)``, added to ``store``."""
    review = make_review(**fields)
    assert await store.add(review)
    return review


class Reviews:
    """What the ``reviews`` fixture hands a test."""

    NOW = NOW
    ORDER = ORDER
    make = staticmethod(make_review)
    add = staticmethod(stored)


@pytest.fixture
def reviews() -> type[Reviews]:
    """Review factories and the constants they use."""
    return Reviews


@pytest.fixture
def publisher() -> FakePublisher:
    """A publisher that records what it is given."""
    return FakePublisher()
