"""Claiming and deciding reviews, by reviewers and by deadlines, on both real stores
(SQLite and Postgres); a decision that cannot be published, or whose process dies before
it is, is published by the outbox's relay."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import pytest
from pactmesh_contracts.envelope import Principal
from pactmesh_contracts.events import ReviewDecided, ReviewDecision
from pactmesh_contracts.topics import REVIEWS_DECIDED
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_hitl.adapters.store import open_store
from pactmesh_hitl.domain.decisions import (
    EXPIRY_REVIEWER,
    claim,
    decide,
    edited_fields,
    expire_due,
    release,
)
from pactmesh_hitl.domain.reviews import (
    DecisionRequest,
    Review,
    ReviewError,
    ReviewState,
    ReviewStore,
)
from pactmesh_hitl.settings import Settings
from pactmesh_kit.stores.outbox import Relay

TTL = timedelta(minutes=15)


@pytest.fixture
def settings(store_backend: StoreBackend) -> Settings:
    """hitl's settings selecting the store under test."""
    return Settings(**store_backend.settings())


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[ReviewStore]:
    async with open_store(settings) as opened:
        yield opened


async def _relayed(store: ReviewStore, publisher: Any) -> list[Any]:
    """What the outbox's relay publishes once every lease has passed."""
    published = len(publisher.events)
    relay = Relay(
        publisher, topic=REVIEWS_DECIDED, lease_s=30, interval_s=1, clock=lambda: time.time() + 60
    )
    await relay.relay(store.outbox)
    assert await relay.relay(store.outbox) == 0  # and only once
    return list(publisher.events[published:])


def _request(decision: str = "approve", **changes: Any) -> DecisionRequest:
    return DecisionRequest.model_validate({"decision": decision, **changes})


async def _decide(
    store: ReviewStore,
    publisher: Any,
    review: Review,
    request: DecisionRequest,
    reviewer: str = "maria",
) -> Review:
    return await decide(
        store=store, publisher=publisher, review=review, reviewer=_as(reviewer), request=request
    )


def _as(subject: str) -> Principal:
    """A reviewer's verified principal, holding the seeded reviews' role."""
    return Principal(subject=subject, roles=("procurement-manager",))


async def _state(store: ReviewStore, review: Review) -> ReviewState:
    found = await store.get(review.review_id)
    assert found is not None
    return found.state


# -- reviewers ------------------------------------------------------------------------


async def test_approval_is_stored_recorded_and_published_as_the_requests_consequence(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    review = await reviews.add(store)

    decided = await _decide(store, publisher, review, _request(comment="budgeted"))

    assert decided.state is ReviewState.DECIDED
    assert (decided.decision, decided.decided_by, decided.comment) == (
        "approve",
        "maria",
        "budgeted",
    )
    assert decided.decided_at is not None
    [event] = publisher.events
    assert event.payload == ReviewDecided(
        review_id=review.review_id,
        decision=ReviewDecision.APPROVE,
        reviewer="maria",
        comment="budgeted",
        decided_by=_as("maria"),
    )
    assert (event.workflow_id, event.tenant) == (review.workflow_id, "acme")
    assert event.causation_id == review.request_event_id
    assert event.principal == Principal(subject="unknown")  # the review carried none
    [_, entry] = await store.history(review.review_id)
    assert (entry.action, entry.actor, entry.at) == ("decided", "maria", decided.decided_at)
    assert entry.detail == {"decision": "approve", "comment": "budgeted"}


async def test_reject_is_published(store: ReviewStore, publisher: Any, reviews: Any) -> None:
    review = await reviews.add(store)

    await _decide(store, publisher, review, _request("reject", comment="over budget"))

    assert [(d.decision, d.comment) for d in publisher.decisions] == [
        (ReviewDecision.REJECT, "over budget")
    ]


@pytest.mark.parametrize("settle", ["decided", "withdrawn", "expired"])
async def test_a_review_no_longer_pending_cannot_be_decided(
    store: ReviewStore, publisher: Any, reviews: Any, settle: str
) -> None:
    review = await reviews.add(store)
    if settle == "decided":
        await _decide(store, publisher, review, _request())
    elif settle == "withdrawn":
        await store.withdraw_for(review.workflow_id, now=reviews.NOW)
    else:
        assert await expire_due(store=store, publisher=publisher, now=review.expires_at) == 1
    published = len(publisher.events)
    current = await store.get(review.review_id)
    assert current is not None

    with pytest.raises(ReviewError, match=f"is {settle}") as caught:
        await _decide(store, publisher, current, _request("reject"), reviewer="bob")

    assert caught.value.code == "conflict"
    assert len(publisher.events) == published


async def test_a_review_past_its_deadline_cannot_be_decided_before_the_sweep(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    review = await reviews.add(store, expires_at=reviews.NOW - timedelta(seconds=1))

    with pytest.raises(ReviewError, match="expired at") as caught:
        await _decide(store, publisher, review, _request())

    assert caught.value.code == "conflict"
    assert publisher.events == []


async def test_a_stale_view_of_a_decided_review_is_refused_by_the_store(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    """The caller read the review while pending; someone decided it since."""
    review = await reviews.add(store)
    await _decide(store, publisher, review, _request(), reviewer="bob")

    with pytest.raises(ReviewError, match="is decided") as caught:
        await _decide(store, publisher, review, _request("reject"))

    assert caught.value.code == "conflict"
    assert len(publisher.events) == 1


async def test_a_valid_edit_is_published_as_the_contract_renders_it_and_its_fields_recorded(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    review = await reviews.add(store)
    edited = {
        "vendor": "Acme Supplies",
        "items": [{"description": "laptops", "quantity": 8, "unit_price": 1000}],
        "amount": 8000,
    }

    decided = await _decide(
        store, publisher, review, _request("edit", edited_action=edited, comment="only 8")
    )

    normalised = {
        **reviews.ORDER,
        "items": [{"description": "laptops", "quantity": 8, "unit_price": 1000.0}],
        "amount": 8000.0,
    }
    assert decided.edited_action == normalised
    [decision] = publisher.decisions
    assert (decision.decision, decision.edited_action) == (ReviewDecision.EDIT, normalised)
    [*_, entry] = await store.history(review.review_id)
    assert entry.detail == {
        "decision": "edit",
        "comment": "only 8",
        "edited_fields": {
            "amount": {"from": 12000.0, "to": 8000.0},
            "items": {"from": reviews.ORDER["items"], "to": normalised["items"]},
        },
    }


def test_edited_fields_lists_changed_added_and_removed_fields() -> None:
    assert edited_fields({"a": 1, "b": 2, "c": 3}, {"a": 1, "b": 5, "d": 4}) == {
        "b": {"from": 2, "to": 5},
        "c": {"from": 3, "to": None},
        "d": {"from": None, "to": 4},
    }


@pytest.mark.parametrize(
    ("edited", "errors"),
    [
        (
            {"amount": 11000.0},
            [(["body", "edited_action"], "value_error")],
        ),
        (
            {"approved": True},
            [(["body", "edited_action", "approved"], "extra_forbidden")],
        ),
        (
            {"items": [{"description": "", "quantity": 0, "unit_price": 1.0}]},
            [
                (["body", "edited_action", "items", 0, "description"], "string_too_short"),
                (["body", "edited_action", "items", 0, "quantity"], "greater_than"),
            ],
        ),
        (
            {"vendor": None},
            [(["body", "edited_action", "vendor"], "string_type")],
        ),
    ],
    ids=["amount-not-the-total", "unknown-field", "bad-line", "no-vendor"],
)
async def test_an_invalid_edit_is_refused_with_its_field_errors(
    store: ReviewStore,
    publisher: Any,
    reviews: Any,
    edited: dict[str, Any],
    errors: list[tuple[list[Any], str]],
) -> None:
    review = await reviews.add(store)

    with pytest.raises(ReviewError, match=r"does not satisfy purchase_order\.v1") as caught:
        await _decide(
            store, publisher, review, _request("edit", edited_action={**reviews.ORDER, **edited})
        )

    assert caught.value.code == "invalid"
    assert [(e["loc"], e["type"]) for e in caught.value.errors] == errors
    assert all(e["msg"] for e in caught.value.errors)
    assert await _state(store, review) is ReviewState.PENDING
    assert publisher.events == []


@pytest.mark.parametrize(
    ("request_", "kind"),
    [(_request("edit"), "missing"), (_request("approve", edited_action={}), "extra_forbidden")],
    ids=["edit-without-action", "approve-with-action"],
)
async def test_edited_action_goes_with_edit_and_only_with_edit(
    store: ReviewStore, publisher: Any, reviews: Any, request_: DecisionRequest, kind: str
) -> None:
    review = await reviews.add(store)

    with pytest.raises(ReviewError) as caught:
        await _decide(store, publisher, review, request_)

    assert caught.value.code == "invalid"
    assert [(e["loc"], e["type"]) for e in caught.value.errors] == [
        (["body", "edited_action"], kind)
    ]
    assert publisher.events == []


async def test_an_edit_of_an_action_without_a_contract_is_refused(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    review = await reviews.add(store, action_type="wire_transfer.v1")

    with pytest.raises(ReviewError, match=r"no action contract 'wire_transfer\.v1'") as caught:
        await _decide(store, publisher, review, _request("edit", edited_action=reviews.ORDER))

    assert caught.value.code == "invalid"
    assert caught.value.errors[0]["loc"] == ["body", "edited_action"]
    assert publisher.events == []


async def test_a_decision_that_cannot_be_published_stands_and_is_relayed(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    review = await reviews.add(store)
    publisher.broken = True

    decided = await _decide(store, publisher, review, _request("reject"))

    assert decided.state is ReviewState.DECIDED
    assert [h.action for h in await store.history(review.review_id)] == ["requested", "decided"]
    publisher.broken = False
    [relayed] = await _relayed(store, publisher)
    assert (relayed.payload.review_id, relayed.payload.decision) == (
        review.review_id,
        ReviewDecision.REJECT,
    )
    assert relayed.causation_id == review.request_event_id


class Crash(BaseException):
    """The process dies here (a test hook: raised by the publisher, after the commit)."""


class CrashingPublisher:
    """Dies on its first publish, before anything reaches the broker."""

    async def publish(self, event: Any) -> None:
        raise Crash


async def test_a_crash_between_commit_and_publish_publishes_after_restart_exactly_once(
    settings: Settings, publisher: Any, reviews: Any
) -> None:
    async with open_store(settings) as before:
        review = await reviews.add(before)
        with pytest.raises(Crash):
            await _decide(before, CrashingPublisher(), review, _request(comment="ok"))

    async with open_store(settings) as restarted:  # the same data, a new process
        current = await restarted.get(review.review_id)
        assert current is not None
        assert current.state is ReviewState.DECIDED
        [relayed] = await _relayed(restarted, publisher)
        assert (relayed.payload.review_id, relayed.payload.comment) == (review.review_id, "ok")
        with pytest.raises(ReviewError, match="is decided"):
            await _decide(restarted, publisher, current, _request("reject"), reviewer="bob")
    assert len(publisher.events) == 1


# -- claims ---------------------------------------------------------------------------


async def test_a_claim_keeps_others_from_deciding_until_it_lapses(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    review = await reviews.add(store)
    claimed = await claim(store=store, review=review, reviewer="bob", ttl=TTL, now=reviews.NOW)
    assert (claimed.claimed_by, claimed.claimed_until) == ("bob", reviews.NOW + TTL)

    with pytest.raises(ReviewError, match="claimed by bob") as caught:
        await claim(store=store, review=claimed, reviewer="maria", ttl=TTL, now=reviews.NOW)
    assert caught.value.code == "conflict"
    with pytest.raises(ReviewError, match="claimed by bob"):
        await decide(
            store=store,
            publisher=publisher,
            review=claimed,
            reviewer=_as("maria"),
            request=_request(),
            now=reviews.NOW + TTL - timedelta(seconds=1),
        )
    after_lapse = reviews.NOW + TTL
    decided = await decide(
        store=store,
        publisher=publisher,
        review=claimed,
        reviewer=_as("maria"),
        request=_request(),
        now=after_lapse,
    )
    assert decided.decided_by == "maria"


async def test_claiming_again_extends_and_the_holder_may_decide(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    review = await reviews.add(store)
    await claim(store=store, review=review, reviewer="bob", ttl=TTL, now=reviews.NOW)
    later = reviews.NOW + timedelta(minutes=10)

    extended = await claim(store=store, review=review, reviewer="bob", ttl=TTL, now=later)

    assert extended.claimed_until == later + TTL
    decided = await _decide(store, publisher, extended, _request(), reviewer="bob")
    assert decided.decided_by == "bob"


async def test_only_the_holder_releases(store: ReviewStore, reviews: Any) -> None:
    review = await reviews.add(store)
    claimed = await claim(store=store, review=review, reviewer="bob", ttl=TTL)

    with pytest.raises(ReviewError, match="claimed by bob"):
        await release(store=store, review=claimed, reviewer="maria")
    released = await release(store=store, review=claimed, reviewer="bob")
    with pytest.raises(ReviewError, match="holds no claim"):
        await release(store=store, review=released, reviewer="bob")

    assert (released.claimed_by, released.claimed_until) == (None, None)
    retaken = await claim(store=store, review=released, reviewer="maria", ttl=TTL)
    assert retaken.claimed_by == "maria"


async def test_a_decided_review_cannot_be_claimed(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    review = await reviews.add(store)
    await _decide(store, publisher, review, _request())

    with pytest.raises(ReviewError, match="is decided"):
        await claim(store=store, review=review, reviewer="bob", ttl=TTL)


# -- races, with real concurrency: one store (connection, pool) per contender -----------


@pytest.fixture
async def contenders(settings: Settings) -> AsyncIterator[list[ReviewStore]]:
    """Five stores on the same data (a SQLite file, a Postgres database: five pools),
    like five hitl instances."""
    async with AsyncExitStack() as stack:
        stores = [await stack.enter_async_context(open_store(settings)) for _ in range(5)]
        yield stores


async def test_of_concurrent_deciders_on_separate_connections_exactly_one_wins(
    contenders: list[ReviewStore], publisher: Any, reviews: Any
) -> None:
    review = await reviews.add(contenders[0])
    seen = [await s.get(review.review_id) for s in contenders]  # every contender sees it pending
    assert all(r is not None and r.state is ReviewState.PENDING for r in seen)

    async with asyncio.timeout(20):
        results = await asyncio.gather(
            *(
                decide(
                    store=s,
                    publisher=publisher,
                    review=review,
                    reviewer=_as(f"reviewer-{n}"),
                    request=_request("approve" if n % 2 else "reject"),
                )
                for n, s in enumerate(contenders)
            ),
            return_exceptions=True,
        )

    [won] = [r for r in results if isinstance(r, Review)]
    lost = [r for r in results if isinstance(r, ReviewError)]
    assert len(lost) == len(contenders) - 1
    assert {e.code for e in lost} == {"conflict"}
    [decision] = publisher.decisions
    assert (decision.reviewer, decision.decision.value) == (won.decided_by, won.decision)
    assert [(h.action, h.actor) for h in await contenders[-1].history(review.review_id)] == [
        ("requested", "workflow"),
        ("decided", won.decided_by),
    ]


async def test_of_concurrent_claimers_exactly_one_holds_the_claim(
    contenders: list[ReviewStore], reviews: Any
) -> None:
    review = await reviews.add(contenders[0])

    async with asyncio.timeout(20):
        results = await asyncio.gather(
            *(
                claim(store=s, review=review, reviewer=f"reviewer-{n}", ttl=TTL)
                for n, s in enumerate(contenders)
            ),
            return_exceptions=True,
        )

    [won] = [r for r in results if isinstance(r, Review)]
    assert sum(isinstance(r, ReviewError) for r in results) == len(contenders) - 1
    final = await contenders[0].get(review.review_id)
    assert final is not None
    assert final.claimed_by == won.claimed_by


async def test_many_concurrent_deciders_on_one_connection_publish_once(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    review = await reviews.add(store)

    results = await asyncio.gather(
        *(
            _decide(store, publisher, review, _request(), reviewer=f"reviewer-{n}")
            for n in range(5)
        ),
        return_exceptions=True,
    )

    assert sum(isinstance(r, Review) for r in results) == 1
    assert all(isinstance(r, Review | ReviewError) for r in results)
    assert len(publisher.events) == 1


# -- deadlines ------------------------------------------------------------------------


async def test_expire_due_expires_only_overdue_reviews_claimed_or_not(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    now = reviews.NOW
    overdue = await reviews.add(store, expires_at=now - timedelta(minutes=1))
    current = await reviews.add(store, expires_at=now + timedelta(minutes=1))
    await store.claim(overdue.review_id, reviewer="bob", until=now + TTL, now=now - TTL)

    assert await expire_due(store=store, publisher=publisher, now=now) == 1

    [event] = publisher.events
    assert event.payload == ReviewDecided(
        review_id=overdue.review_id,
        decision=ReviewDecision.EXPIRE,
        reviewer=EXPIRY_REVIEWER,
        comment="deadline passed",
    )
    assert EXPIRY_REVIEWER == "policy:expiry"
    assert (event.workflow_id, event.causation_id) == (
        overdue.workflow_id,
        overdue.request_event_id,
    )
    expired = await store.get(overdue.review_id)
    assert expired is not None
    assert (expired.state, expired.decision, expired.decided_by) == (
        ReviewState.EXPIRED,
        "expire",
        EXPIRY_REVIEWER,
    )
    [*_, entry] = await store.history(overdue.review_id)
    assert (entry.action, entry.actor, entry.at) == ("expired", EXPIRY_REVIEWER, now)
    assert await _state(store, current) is ReviewState.PENDING
    assert await expire_due(store=store, publisher=publisher, now=now) == 0
    assert len(publisher.events) == 1


async def test_an_expiry_that_cannot_be_published_stands_and_is_relayed(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    overdue = await reviews.add(store, expires_at=reviews.NOW - timedelta(minutes=1))
    publisher.broken = True

    assert await expire_due(store=store, publisher=publisher, now=reviews.NOW) == 1

    assert await _state(store, overdue) is ReviewState.EXPIRED
    publisher.broken = False
    assert await expire_due(store=store, publisher=publisher, now=reviews.NOW) == 0
    [relayed] = await _relayed(store, publisher)
    assert relayed.payload.decision is ReviewDecision.EXPIRE


async def test_sweepers_on_every_instance_expire_each_review_once(
    contenders: list[ReviewStore], publisher: Any, reviews: Any
) -> None:
    overdue = [
        await reviews.add(contenders[0], expires_at=reviews.NOW - timedelta(minutes=m))
        for m in range(1, 7)
    ]

    async with asyncio.timeout(20):
        counts = await asyncio.gather(
            *(expire_due(store=s, publisher=publisher, now=reviews.NOW) for s in contenders)
        )

    assert sum(counts) == len(overdue)
    assert sorted(d.review_id for d in publisher.decisions) == sorted(r.review_id for r in overdue)


async def test_unknown_reviews_cannot_be_claimed(store: ReviewStore, reviews: Any) -> None:
    ghost = reviews.make()  # never stored

    with pytest.raises(ReviewError) as caught:
        await claim(store=store, review=ghost, reviewer="bob", ttl=TTL)

    assert caught.value.code == "conflict"
    assert "gone" in str(caught.value)
    assert await store.get(uuid.uuid4()) is None


# -- separation of duties -----------------------------------------------------------------


async def test_the_requester_may_neither_claim_nor_decide_their_own_review(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    mine = (await reviews.add(store)).model_copy(
        update={"principal": Principal(subject="maria", roles=("requester",))}
    )

    with pytest.raises(ReviewError, match="separation of duties") as claimed:
        await claim(store=store, review=mine, reviewer="maria", ttl=TTL)
    with pytest.raises(ReviewError, match="separation of duties") as decided:
        await _decide(store, publisher, mine, _request(), reviewer="maria")

    assert claimed.value.code == decided.value.code == "forbidden"
    assert claimed.value.http_status == 403
    assert publisher.events == []
    assert await _state(store, mine) is ReviewState.PENDING
    # anyone else with the role may
    assert (await _decide(store, publisher, mine, _request(), reviewer="bob")).decided_by == "bob"


async def test_a_gate_without_separation_of_duties_lets_the_requester_decide(
    store: ReviewStore, publisher: Any, reviews: Any
) -> None:
    mine = (await reviews.add(store)).model_copy(
        update={"principal": Principal(subject="maria"), "separation_of_duties": False}
    )

    decided = await _decide(store, publisher, mine, _request(), reviewer="maria")

    assert decided.decided_by == "maria"
