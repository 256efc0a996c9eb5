"""The reviewer client against a stand-in for the hitl reviewer API."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import pytest
from pactmesh_client import (
    Conflict,
    FieldError,
    Forbidden,
    NotFound,
    PactmeshClientError,
    ReviewerClient,
    Unauthorized,
    ValidationFailed,
)

if TYPE_CHECKING:  # the fixtures' type; conftest modules are not importable by name
    from conftest import FakeReviews

MakeClient = Callable[..., ReviewerClient]


def _queries(fake: FakeReviews) -> list[dict[str, list[str]]]:
    return [parse_qs(urlsplit(url).query) for method, url, _ in fake.requests if method == "GET"]


async def test_pending_walks_every_page(reviewer: MakeClient, fake: FakeReviews) -> None:
    expected = [r["review_id"] for r in fake.reviews.values() if r["state"] == "pending"]

    found = [str(r.review_id) async for r in reviewer().pending(limit=2)]

    assert found == expected
    assert [q.get("cursor") for q in _queries(fake)] == [None, ["2"], ["4"]]
    assert all(q["state"] == ["pending"] and q["limit"] == ["2"] for q in _queries(fake))


async def test_pending_forwards_the_filters(reviewer: MakeClient, fake: FakeReviews) -> None:
    reviews = [
        r async for r in reviewer().pending(workflow="refund", priority="high", min_age_s=599)
    ]

    assert [(r.workflow, r.state, r.priority) for r in reviews] == [
        ("refund", "pending", "high")
    ] * 2
    [query] = _queries(fake)
    assert query == {
        "state": ["pending"],
        "workflow": ["refund"],
        "priority": ["high"],
        "min_age_s": ["599"],
    }


async def test_a_review_keeps_the_fields_the_client_does_not_know(
    reviewer: MakeClient, fake: FakeReviews
) -> None:
    review_id = next(iter(fake.reviews))

    review = await reviewer().get(review_id)

    assert review.review_id == uuid.UUID(review_id)
    assert review.proposed_action == {"order_id": "4411", "amount": 700.0, "currency": "USD"}
    assert review.model_extra == {"sla": "4h"}


async def test_claim_approve_and_read_the_history(reviewer: MakeClient, fake: FakeReviews) -> None:
    client = reviewer()
    review = await anext(client.pending(workflow="procurement"))

    claimed = await client.claim(review.review_id)
    decided = await client.approve(review.review_id, comment="within budget")
    history = await client.history(review.review_id)

    assert claimed is not None
    assert claimed.claimed_by == "alice"
    assert decided is not None
    assert (decided.state, decided.decision, decided.decided_by) == ("decided", "approve", "alice")
    assert [(h.actor, h.action) for h in history] == [
        (None, "requested"),
        ("alice", "claimed"),
        ("alice", "approve"),
    ]
    assert history[-1].comment == "within budget"
    _, _, headers = fake.requests[-1]
    assert headers["authorization"] == "Bearer alice-token"


async def test_a_review_claimed_by_another_cannot_be_claimed_or_decided(
    reviewer: MakeClient,
) -> None:
    alice, bob = reviewer("alice-token"), reviewer("bob-token")
    review = await anext(alice.pending())
    await bob.claim(review.review_id)

    with pytest.raises(Conflict, match="claimed by bob") as claimed:
        await alice.claim(review.review_id)
    with pytest.raises(Conflict):
        await alice.reject(review.review_id, comment="no")

    assert claimed.value.status == 409
    assert await bob.release(review.review_id) is None  # 204, no body
    assert await alice.claim(review.review_id) is not None


async def test_a_decided_review_cannot_be_decided_again(reviewer: MakeClient) -> None:
    client = reviewer()
    review = await anext(client.pending())
    await client.reject(review.review_id, comment="out of policy")

    with pytest.raises(Conflict, match="is decided"):
        await client.approve(review.review_id)


async def test_an_edit_outside_the_action_contract_names_the_fields(
    reviewer: MakeClient, fake: FakeReviews
) -> None:
    client = reviewer()
    review = await anext(client.pending(workflow="refund"))

    with pytest.raises(ValidationFailed) as refused:
        await client.edit(
            review.review_id, {"order_id": "4411", "amount": -5, "currency": "GBP"}, comment="less"
        )

    errors = {e.loc: e for e in refused.value.field_errors}
    assert set(errors) == {
        ("body", "edited_action", "amount"),
        ("body", "edited_action", "currency"),
    }
    assert errors["body", "edited_action", "amount"].type == "greater_than"
    assert refused.value.status == 422
    assert "edited_action.amount" in str(refused.value)
    assert fake.reviews[str(review.review_id)]["state"] == "pending"

    edited = await client.edit(
        review.review_id, {"order_id": "4411", "amount": 350.0, "currency": "USD"}, comment="half"
    )
    assert edited is not None
    assert (edited.decision, edited.edited_action) == (
        "edit",
        {"order_id": "4411", "amount": 350.0, "currency": "USD"},
    )


async def test_an_invalid_query_is_a_validation_error(reviewer: MakeClient) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await reviewer().page(limit=0)
    [error] = refused.value.field_errors
    assert error.loc == ("query", "limit")


@pytest.mark.parametrize(
    ("token", "error", "status"),
    [("wrong-token", Unauthorized, 401), ("auditor-token", Forbidden, 403)],
)
async def test_refused_credentials_raise_their_error(
    reviewer: MakeClient, token: str, error: type[Exception], status: int
) -> None:
    review_id = uuid.uuid4()
    with pytest.raises(error) as refused:
        await reviewer(token).claim(review_id)
    assert getattr(refused.value, "status", None) == status
    assert f"POST http://hitl.test/v1/reviews/{review_id}/claim: {status}" in str(refused.value)


async def test_an_unknown_review_is_not_found(reviewer: MakeClient) -> None:
    missing = uuid.uuid4()
    with pytest.raises(NotFound, match=f"no review {missing}"):
        await reviewer().get(missing)
    with pytest.raises(NotFound):
        await reviewer().history(missing)


async def test_a_token_function_is_asked_for_each_request(
    reviewer: MakeClient, fake: FakeReviews
) -> None:
    tokens = iter(["alice-token", "bob-token"])
    client = reviewer(lambda: next(tokens))
    review_id = next(iter(fake.reviews))

    await client.get(review_id)
    await client.get(review_id)

    assert [h["authorization"] for _, _, h in fake.requests] == [
        "Bearer alice-token",
        "Bearer bob-token",
    ]


async def test_a_server_that_repeats_its_cursor_is_not_followed_forever(
    reviewer: MakeClient, fake: FakeReviews
) -> None:
    fake.repeat_cursor = True
    with pytest.raises(PactmeshClientError, match="cursor '0' twice"):
        async for _ in reviewer().pending(limit=1):
            pass
    assert len(fake.requests) == 2


def test_field_errors_read_fastapi_and_bare_messages() -> None:
    from pactmesh_client.reviewer import _field_errors

    assert _field_errors([{"loc": ["body", "x"], "msg": "bad", "type": "t"}]) == [
        FieldError(loc=("body", "x"), msg="bad", type="t")
    ]
    assert _field_errors("amount must be positive") == [
        FieldError(loc=(), msg="amount must be positive")
    ]
