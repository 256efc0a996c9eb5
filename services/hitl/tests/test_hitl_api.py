"""``/v1/reviews`` without Kafka: the app's lifespan (which starts the broker) is never
entered; the review store is a real SQLite store and the publisher is a fake."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import ReviewDecided, ReviewDecision
from pactmesh_hitl.adapters.sqlite_store import SqliteReviewStore, open_store
from pactmesh_hitl.app import create_app
from pactmesh_hitl.domain.reviews import Review, ReviewState
from pactmesh_hitl.handlers import Runtime
from pactmesh_hitl.settings import Settings

NOW = datetime.now(UTC)
ORDER: dict[str, Any] = {
    "action_type": "purchase_order.v1",
    "vendor": "Acme Supplies",
    "items": [{"description": "laptops", "quantity": 12, "unit_price": 1000.0}],
    "amount": 12000.0,
    "currency": "USD",
}
MANAGER = {"reviewer": "maria", "roles": ["procurement-manager"]}


class FakePublisher:
    """Collects published events; fails every publish while ``broken`` is set."""

    def __init__(self) -> None:
        self.events: list[Envelope[Any]] = []
        self.broken = False

    async def publish(self, event: Envelope[Any]) -> None:
        if self.broken:
            raise ConnectionError("kafka unreachable")
        self.events.append(event)


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path, topic_prefix="hitl-api-test."))


@pytest.fixture
def publisher(app: FastAPI) -> FakePublisher:
    fake = FakePublisher()
    runtime: Runtime = app.state.runtime
    runtime.publisher = fake  # type: ignore[assignment]
    return fake


@pytest.fixture
async def store(app: FastAPI, tmp_path: Path) -> AsyncIterator[SqliteReviewStore]:
    runtime: Runtime = app.state.runtime
    async with open_store(tmp_path / "hitl.sqlite3") as opened:
        runtime.store = opened
        yield opened
        runtime.store = None


@pytest.fixture
async def http(
    app: FastAPI, store: SqliteReviewStore, publisher: FakePublisher
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hitl") as client:
        yield client


async def _stored(
    store: SqliteReviewStore,
    *,
    tenant: str = "acme",
    workflow: str = "procurement",
    minute: int = 0,
) -> Review:
    review = Review(
        review_id=uuid.uuid4(),
        workflow_id=uuid.uuid4(),
        workflow=workflow,
        tenant=tenant,
        rule="procurement.amount_over_threshold",
        summary="Purchase order above the approval threshold",
        action_type="purchase_order.v1",
        proposed_action=ORDER,
        required_role="procurement-manager",
        expires_at=NOW + timedelta(hours=4),
        state=ReviewState.PENDING,
        requested_at=NOW - timedelta(minutes=60 - minute),
        # no principal: a stored one cannot be read back yet (see test_hitl_store)
        request_event_id=uuid.uuid4(),
    )
    assert await store.add(review)
    return review


def _url(review: Review | uuid.UUID) -> str:
    review_id = review.review_id if isinstance(review, Review) else review
    return f"/v1/reviews/{review_id}/decision"


async def test_decision_returns_the_decided_review_and_publishes_it(
    http: httpx.AsyncClient, store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)

    response = await http.post(_url(review), json={"decision": "approve", **MANAGER})

    assert response.status_code == 200, response.text
    body = Review.model_validate(response.json())
    assert body == await store.get(review.review_id)
    assert (body.state, body.decision, body.decided_by) == (
        ReviewState.DECIDED,
        "approve",
        "maria",
    )
    [event] = publisher.events
    assert event.payload == ReviewDecided(
        review_id=review.review_id, decision=ReviewDecision.APPROVE, reviewer="maria"
    )


async def test_edit_returns_the_edit_as_the_contract_renders_it(
    http: httpx.AsyncClient, store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)
    edited = {
        "vendor": "Acme Supplies",
        "items": [{"description": "laptops", "quantity": 8, "unit_price": 1000}],
        "amount": 8000,
    }

    response = await http.post(
        _url(review), json={"decision": "edit", "edited_action": edited, **MANAGER}
    )

    assert response.status_code == 200, response.text
    assert response.json()["edited_action"] == {
        **ORDER,
        "items": [{"description": "laptops", "quantity": 8, "unit_price": 1000.0}],
        "amount": 8000.0,
    }
    assert publisher.events[0].payload.edited_action == response.json()["edited_action"]


async def test_unknown_review_is_404(http: httpx.AsyncClient, publisher: FakePublisher) -> None:
    missing = uuid.uuid4()

    response = await http.post(_url(missing), json={"decision": "approve", **MANAGER})

    assert response.status_code == 404
    assert response.json() == {"detail": f"no review {missing}"}
    assert publisher.events == []


async def test_reviewer_without_the_role_is_403(
    http: httpx.AsyncClient, store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)

    response = await http.post(
        _url(review), json={"decision": "approve", "reviewer": "sam", "roles": ["support-agent"]}
    )

    assert response.status_code == 403
    assert "procurement-manager" in response.json()["detail"]
    assert publisher.events == []
    assert (await http.get(f"/v1/reviews/{review.review_id}")).json()["state"] == "pending"


async def test_second_decision_is_409(
    http: httpx.AsyncClient, store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)
    first = await http.post(_url(review), json={"decision": "reject", **MANAGER})

    second = await http.post(_url(review), json={"decision": "approve", **MANAGER})

    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json() == {"detail": f"review {review.review_id} is decided"}
    assert len(publisher.events) == 1


async def test_invalid_edit_is_422_with_field_errors(
    http: httpx.AsyncClient, store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)
    edited = {**ORDER, "amount": 11000.0, "discount": 0.1}

    response = await http.post(
        _url(review), json={"decision": "edit", "edited_action": edited, **MANAGER}
    )

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [(e["loc"], e["type"]) for e in errors] == [
        (["body", "edited_action", "discount"], "extra_forbidden")
    ]
    assert publisher.events == []


async def test_edit_whose_amount_is_not_the_total_is_422(
    http: httpx.AsyncClient, store: SqliteReviewStore
) -> None:
    review = await _stored(store)

    response = await http.post(
        _url(review),
        json={"decision": "edit", "edited_action": {**ORDER, "amount": 11000.0}, **MANAGER},
    )

    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "edited_action"]
    assert "not the total of the lines" in error["msg"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"decision": "expire", **MANAGER}, ["body", "decision"]),
        ({"decision": "approve", "reviewer": "maria", "roles": []}, ["body", "roles"]),
        ({"decision": "approve", "roles": ["procurement-manager"]}, ["body", "reviewer"]),
        ({"decision": "approve", "as_admin": True, **MANAGER}, ["body", "as_admin"]),
    ],
    ids=["reviewers-cannot-expire", "no-roles", "no-reviewer", "unknown-field"],
)
async def test_malformed_body_is_422_before_the_store_is_touched(
    http: httpx.AsyncClient,
    store: SqliteReviewStore,
    publisher: FakePublisher,
    body: dict[str, Any],
    loc: list[str],
) -> None:
    review = await _stored(store)

    response = await http.post(_url(review), json=body)

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [loc]
    assert (await store.get(review.review_id)) == review
    assert publisher.events == []


async def test_failed_publish_leaves_the_review_pending(
    http: httpx.AsyncClient, store: SqliteReviewStore, publisher: FakePublisher
) -> None:
    review = await _stored(store)
    publisher.broken = True

    with pytest.raises(ConnectionError):
        await http.post(_url(review), json={"decision": "approve", **MANAGER})

    assert await store.get(review.review_id) == review


async def test_get_review_and_404(http: httpx.AsyncClient, store: SqliteReviewStore) -> None:
    review = await _stored(store)

    found = await http.get(f"/v1/reviews/{review.review_id}")
    missing = await http.get(f"/v1/reviews/{uuid.uuid4()}")

    assert found.status_code == 200
    assert Review.model_validate(found.json()) == review
    assert missing.status_code == 404


async def test_pending_list_filters_and_pages(
    http: httpx.AsyncClient, store: SqliteReviewStore
) -> None:
    first = await _stored(store, minute=1)
    refund = await _stored(store, minute=2, workflow="refund")
    other = await _stored(store, minute=3, tenant="globex")
    decided = await _stored(store, minute=4)
    await http.post(_url(decided), json={"decision": "approve", **MANAGER})

    async def ids(**params: Any) -> list[str]:
        response = await http.get("/v1/reviews", params=params)
        assert response.status_code == 200, response.text
        return [r["review_id"] for r in response.json()]

    assert await ids() == [str(r.review_id) for r in (first, refund, other)]
    assert await ids(tenant="acme") == [str(first.review_id), str(refund.review_id)]
    assert await ids(tenant="acme", workflow="refund") == [str(refund.review_id)]
    assert await ids(limit=1, offset=1) == [str(refund.review_id)]
    assert (await http.get("/v1/reviews", params={"limit": 0})).status_code == 422
