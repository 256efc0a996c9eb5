"""``/v1/reviews`` without Kafka: the app's lifespan (which starts the broker) is never
entered; the review store is a real SQLite store, the publisher a fake, and callers
carry real bearer tokens from the development issuer."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pactmesh_contracts.envelope import Principal
from pactmesh_contracts.events import ReviewDecided, ReviewDecision
from pactmesh_contracts.topics import REVIEWS_DECIDED
from pactmesh_hitl.adapters.sqlite_store import SqliteReviewStore, open_sqlite_store
from pactmesh_hitl.app import create_app
from pactmesh_hitl.domain.decisions import claim as claim_review
from pactmesh_hitl.domain.reviews import Review, ReviewPriority, ReviewState
from pactmesh_hitl.runtime import Runtime
from pactmesh_hitl.settings import Settings
from pactmesh_kit.auth.devissuer import DevIssuer
from pactmesh_kit.auth.testing import bearer

MANAGER = ("procurement-manager",)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, topic_prefix="hitl-api-test.")


@pytest.fixture
def app(settings: Settings, publisher: Any) -> FastAPI:
    built = create_app(settings)
    runtime: Runtime = built.state.runtime
    runtime.publisher = publisher
    return built


@pytest.fixture
async def store(app: FastAPI, tmp_path: Path) -> AsyncIterator[SqliteReviewStore]:
    runtime: Runtime = app.state.runtime
    async with open_sqlite_store(tmp_path / "hitl.sqlite3") as opened:
        runtime.store = opened
        yield opened
        runtime.store = None


@pytest.fixture
async def http(app: FastAPI, store: SqliteReviewStore) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hitl") as client:
        yield client


@pytest.fixture
def auth(settings: Settings) -> Any:
    """``auth(subject, roles=..., tenant=...)``: an Authorization header."""

    def header(
        subject: str = "maria", *, roles: tuple[str, ...] = MANAGER, tenant: str = "acme"
    ) -> dict[str, str]:
        return bearer(settings, tenant=tenant, roles=roles, subject=subject)

    return header


def _decision(review: Review) -> str:
    return f"/v1/reviews/{review.review_id}/decision"


def _claim(review: Review) -> str:
    return f"/v1/reviews/{review.review_id}/claim"


# -- authentication and tenants --------------------------------------------------------


def _routes(review_id: uuid.UUID) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        ("GET", "/v1/reviews", None),
        ("GET", f"/v1/reviews/{review_id}", None),
        ("GET", f"/v1/reviews/{review_id}/history", None),
        ("POST", f"/v1/reviews/{review_id}/claim", None),
        ("DELETE", f"/v1/reviews/{review_id}/claim", None),
        ("POST", f"/v1/reviews/{review_id}/decision", {"decision": "approve"}),
    ]


async def _call(
    http: httpx.AsyncClient,
    route: tuple[str, str, dict[str, Any] | None],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    method, url, body = route
    return await http.request(method, url, json=body, headers=headers)


async def test_every_reviewer_route_needs_a_valid_token(
    http: httpx.AsyncClient, store: SqliteReviewStore, settings: Settings, reviews: Any
) -> None:
    review = await reviews.add(store)
    expired = bearer(settings, tenant="acme", roles=MANAGER, ttl_s=-3600)
    stranger = DevIssuer(  # the right key, the wrong issuer
        settings.auth_key_dir, issuer="somebody-else", audience="pactmesh"
    ).mint(subject="mallory", tenant="acme", roles=MANAGER)
    forged = DevIssuer(  # the right issuer, someone else's key
        settings.data_dir / "other-key", issuer=settings.auth_issuer, audience="pactmesh"
    ).mint(subject="mallory", tenant="acme", roles=MANAGER)

    for route in _routes(review.review_id):
        missing = await _call(http, route)
        assert missing.status_code == 401, route
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        for token, why in ((None, "token expired"), (stranger, "another issuer")):
            headers = expired if token is None else {"Authorization": f"Bearer {token}"}
            refused = await _call(http, route, headers)
            assert refused.status_code == 401, route
            assert why in refused.json()["detail"]
        forged_response = await _call(http, route, {"Authorization": f"Bearer {forged}"})
        assert forged_response.status_code == 401
        assert "Signature verification failed" in forged_response.json()["detail"]

    assert await store.get(review.review_id) == review


async def test_a_token_without_reviews_read_is_403_everywhere(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any
) -> None:
    review = await reviews.add(store)

    for route in _routes(review.review_id):
        response = await _call(http, route, auth("sam", roles=("requester",)))
        assert response.status_code == 403, route
        assert "reviews:read" in response.json()["detail"]


async def test_a_reviewer_sees_only_their_tenant(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any
) -> None:
    ours = await reviews.add(store, minutes_ago=2)
    await reviews.add(store, tenant="globex", minutes_ago=1)

    listed = await http.get("/v1/reviews", headers=auth())
    named = await http.get("/v1/reviews", params={"tenant": "acme"}, headers=auth())
    other = await http.get("/v1/reviews", params={"tenant": "globex"}, headers=auth())

    assert [r["review_id"] for r in listed.json()["items"]] == [str(ours.review_id)]
    assert named.json() == listed.json()
    assert other.status_code == 403
    assert "globex" in other.json()["detail"]


async def test_another_tenants_review_is_404_for_every_route_and_stays_untouched(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any, publisher: Any
) -> None:
    theirs = await reviews.add(store, tenant="globex")
    missing = reviews.make()

    for review in (theirs, missing):
        for route in _routes(review.review_id)[1:]:
            response = await _call(http, route, auth())
            assert response.status_code == 404, route
            assert response.json() == {"detail": f"no review {review.review_id}"}

    assert await store.get(theirs.review_id) == theirs
    assert [h.action for h in await store.history(theirs.review_id)] == ["requested"]
    assert publisher.events == []


# -- deciding -----------------------------------------------------------------------------


async def test_the_decision_is_the_token_subjects_and_is_published(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any, publisher: Any
) -> None:
    review = await reviews.add(store)

    response = await http.post(
        _decision(review), json={"decision": "approve", "comment": "budgeted"}, headers=auth()
    )

    assert response.status_code == 200, response.text
    body = Review.model_validate(response.json())
    assert body == await store.get(review.review_id)
    assert (body.state, body.decision, body.decided_by, body.comment) == (
        ReviewState.DECIDED,
        "approve",
        "maria",
        "budgeted",
    )
    [event] = publisher.events
    assert event.payload.model_dump(exclude={"decided_by"}) == ReviewDecided(
        review_id=review.review_id,
        decision=ReviewDecision.APPROVE,
        reviewer="maria",
        comment="budgeted",
    ).model_dump(exclude={"decided_by"})
    # the reviewer as the token proved them: what the orchestrator checks again
    assert event.payload.decided_by is not None
    assert event.payload.decided_by.subject == "maria"
    assert "procurement-manager" in event.payload.decided_by.roles


async def test_a_reviewer_cannot_decide_a_review_of_their_own_request(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any, publisher: Any
) -> None:
    review = reviews.make().model_copy(
        update={"principal": Principal(subject="maria", roles=("requester",))}
    )
    await store.add(review)

    claimed = await http.post(_claim(review), headers=auth("maria"))
    decided = await http.post(_decision(review), json={"decision": "approve"}, headers=auth())

    assert (claimed.status_code, decided.status_code) == (403, 403), decided.text
    assert "separation of duties" in decided.json()["detail"]
    assert publisher.events == []
    other = await http.post(_decision(review), json={"decision": "approve"}, headers=auth("bo"))
    assert other.status_code == 200, other.text


async def test_who_decides_cannot_be_claimed_in_the_body(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any
) -> None:
    review = await reviews.add(store)

    response = await http.post(
        _decision(review),
        json={"decision": "approve", "reviewer": "ceo", "roles": ["procurement-manager"]},
        headers=auth("sam", roles=("requester", "reviewer")),
    )

    assert response.status_code == 422
    assert sorted(e["loc"][-1] for e in response.json()["detail"]) == ["reviewer", "roles"]
    assert await store.get(review.review_id) == review


async def test_a_reviewer_without_the_gates_role_is_403(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any, publisher: Any
) -> None:
    review = await reviews.add(store)

    for path in (_decision(review), _claim(review)):
        response = await http.post(
            path, json={"decision": "approve"}, headers=auth("sam", roles=("support-lead",))
        )
        assert response.status_code == 403
        assert "procurement-manager" in response.json()["detail"]
    assert publisher.events == []
    assert await store.get(review.review_id) == review


async def test_the_gates_role_without_the_policys_review_action_is_403(
    tmp_path: Path, reviews: Any, publisher: Any
) -> None:
    """may_review needs both: the role the gate names AND the action in the policy."""
    policy = tmp_path / "access.toml"
    policy.write_text(
        '[roles.procurement-manager]\ncapabilities = ["reviews:read"]\n'
        'review_actions = ["approve"]\n'
    )
    settings = Settings(data_dir=tmp_path, access_policy_file=policy)
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    runtime.publisher = publisher
    async with AsyncExitStack() as stack:
        runtime.store = store = await stack.enter_async_context(
            open_sqlite_store(tmp_path / "p.sqlite3")
        )
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hitl")
        )
        review = await reviews.add(store)
        headers = bearer(settings, tenant="acme", roles=MANAGER, subject="maria")
        edit = {"decision": "edit", "edited_action": reviews.ORDER}

        refused = await http.post(_decision(review), json=edit, headers=headers)
        approved = await http.post(_decision(review), json={"decision": "approve"}, headers=headers)

    assert refused.status_code == 403
    assert approved.status_code == 200


async def test_second_decision_is_409(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any, publisher: Any
) -> None:
    review = await reviews.add(store)
    first = await http.post(_decision(review), json={"decision": "reject"}, headers=auth())

    second = await http.post(_decision(review), json={"decision": "approve"}, headers=auth("bob"))

    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json() == {"detail": f"review {review.review_id} is decided"}
    assert len(publisher.events) == 1


async def test_invalid_edit_is_422_with_field_errors(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any, publisher: Any
) -> None:
    review = await reviews.add(store)

    extra = await http.post(
        _decision(review),
        json={"decision": "edit", "edited_action": {**reviews.ORDER, "discount": 0.1}},
        headers=auth(),
    )
    wrong_total = await http.post(
        _decision(review),
        json={"decision": "edit", "edited_action": {**reviews.ORDER, "amount": 11000.0}},
        headers=auth(),
    )

    assert extra.status_code == 422
    assert [(e["loc"], e["type"]) for e in extra.json()["detail"]] == [
        (["body", "edited_action", "discount"], "extra_forbidden")
    ]
    assert wrong_total.status_code == 422
    [error] = wrong_total.json()["detail"]
    assert error["loc"] == ["body", "edited_action"]
    assert "not the total of the lines" in error["msg"]
    assert publisher.events == []
    assert (await store.get(review.review_id)) == review


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"decision": "expire"}, ["body", "decision"]),
        ({"comment": "no decision"}, ["body", "decision"]),
        ({"decision": "approve", "as_admin": True}, ["body", "as_admin"]),
        ({"decision": "approve", "comment": "x" * 4001}, ["body", "comment"]),
    ],
    ids=["reviewers-cannot-expire", "no-decision", "unknown-field", "comment-too-long"],
)
async def test_malformed_body_is_422_before_the_store_is_touched(
    http: httpx.AsyncClient,
    store: SqliteReviewStore,
    auth: Any,
    reviews: Any,
    publisher: Any,
    body: dict[str, Any],
    loc: list[str],
) -> None:
    review = await reviews.add(store)

    response = await http.post(_decision(review), json=body, headers=auth())

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [loc]
    assert (await store.get(review.review_id)) == review
    assert publisher.events == []


async def test_a_decision_whose_event_cannot_be_published_yet_is_taken_all_the_same(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any, publisher: Any
) -> None:
    review = await reviews.add(store)
    publisher.broken = True

    response = await http.post(_decision(review), json={"decision": "approve"}, headers=auth())

    assert response.status_code == 200
    assert response.json()["state"] == "decided"
    [entry] = await store.outbox.claim_unpublished(now=9e9, lease_until=9e9, limit=10)
    assert REVIEWS_DECIDED.adapter.validate_json(entry.event).payload.review_id == review.review_id


# -- claims -------------------------------------------------------------------------------


async def test_claim_then_others_get_409_until_the_holder_decides(
    http: httpx.AsyncClient,
    store: SqliteReviewStore,
    auth: Any,
    reviews: Any,
    publisher: Any,
    settings: Settings,
) -> None:
    review = await reviews.add(store)
    before = datetime.now(UTC)

    claimed = await http.post(_claim(review), headers=auth("bob"))
    theirs = await http.post(_claim(review), headers=auth("maria"))
    decide_theirs = await http.post(
        _decision(review), json={"decision": "reject"}, headers=auth("maria")
    )
    release_theirs = await http.delete(_claim(review), headers=auth("maria"))
    mine = await http.post(_decision(review), json={"decision": "approve"}, headers=auth("bob"))

    assert claimed.status_code == 200, claimed.text
    body = Review.model_validate(claimed.json())
    assert body.claimed_by == "bob"
    assert body.claimed_until is not None
    ttl = timedelta(seconds=settings.claim_ttl_s)
    assert before + ttl <= body.claimed_until <= datetime.now(UTC) + ttl
    for refused in (theirs, decide_theirs, release_theirs):
        assert refused.status_code == 409
        assert "claimed by bob" in refused.json()["detail"]
    assert mine.status_code == 200
    assert [d.reviewer for d in publisher.decisions] == ["bob"]
    assert (await http.post(_claim(review), headers=auth("bob"))).status_code == 409


async def test_claiming_again_extends_and_releasing_frees_it(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any
) -> None:
    review = await reviews.add(store)

    first = Review.model_validate((await http.post(_claim(review), headers=auth("bob"))).json())
    second = Review.model_validate((await http.post(_claim(review), headers=auth("bob"))).json())
    released = await http.delete(_claim(review), headers=auth("bob"))
    again = await http.delete(_claim(review), headers=auth("bob"))
    taken = await http.post(_claim(review), headers=auth("maria"))

    assert first.claimed_until is not None
    assert second.claimed_until is not None
    assert second.claimed_until > first.claimed_until
    assert released.status_code == 200
    assert released.json()["claimed_by"] is None
    assert again.status_code == 409
    assert taken.json()["claimed_by"] == "maria"


async def test_a_lapsed_claim_no_longer_holds(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any
) -> None:
    review = await reviews.add(store)
    await claim_review(
        store=store,
        review=review,
        reviewer="bob",
        ttl=timedelta(minutes=15),
        now=datetime.now(UTC) - timedelta(minutes=16),
    )

    decided = await http.post(_decision(review), json={"decision": "approve"}, headers=auth())

    assert decided.status_code == 200
    assert decided.json()["decided_by"] == "maria"


async def test_concurrent_deciders_over_http_on_two_instances_get_one_200_and_one_409(
    tmp_path: Path, reviews: Any, publisher: Any
) -> None:
    """Two hitl instances (apps with their own store connections) on one database file."""
    settings = Settings(data_dir=tmp_path)
    async with AsyncExitStack() as stack:
        clients = []
        for _ in range(2):
            app = create_app(settings)
            runtime: Runtime = app.state.runtime
            runtime.publisher = publisher
            runtime.store = await stack.enter_async_context(
                open_sqlite_store(tmp_path / "hitl.sqlite3")
            )
            clients.append(
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        transport=httpx.ASGITransport(app=app), base_url="http://hitl"
                    )
                )
            )
        review = await reviews.add(runtime.store)
        url = _decision(review)

        async with asyncio.timeout(20):
            responses = await asyncio.gather(
                *(
                    client.post(
                        url,
                        json={"decision": decision},
                        headers=bearer(settings, tenant="acme", roles=MANAGER, subject=who),
                    )
                    for client, decision, who in zip(
                        clients, ("approve", "reject"), ("maria", "bob"), strict=True
                    )
                )
            )

    assert sorted(r.status_code for r in responses) == [200, 409]
    [won] = [r.json() for r in responses if r.status_code == 200]
    [decision] = publisher.decisions
    assert (decision.reviewer, decision.decision.value) == (won["decided_by"], won["decision"])


# -- listing ------------------------------------------------------------------------------


async def _ids(http: httpx.AsyncClient, auth: Any, **params: Any) -> list[str]:
    response = await http.get("/v1/reviews", params=params, headers=auth())
    assert response.status_code == 200, response.text
    return [r["review_id"] for r in response.json()["items"]]


async def test_list_filters_by_workflow_priority_age_and_state(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any
) -> None:
    old = await reviews.add(store, minutes_ago=120, priority=ReviewPriority.URGENT)
    refund = await reviews.add(
        store,
        minutes_ago=60,
        workflow="refund",
        priority=ReviewPriority.HIGH,
        required_role="support-lead",
    )
    fresh = await reviews.add(store, minutes_ago=1)
    decided = await reviews.add(store, minutes_ago=30)
    await http.post(_decision(decided), json={"decision": "approve"}, headers=auth())
    await http.post(_claim(fresh), headers=auth())

    def ids(*found: Review) -> list[str]:
        return [str(r.review_id) for r in found]

    assert await _ids(http, auth) == ids(old, refund, fresh)
    assert await _ids(http, auth, workflow="refund") == ids(refund)
    assert await _ids(http, auth, priority=["urgent", "high"]) == ids(old, refund)
    assert await _ids(http, auth, priority="normal") == ids(fresh)
    assert await _ids(http, auth, min_age_s=45 * 60) == ids(old, refund)
    assert await _ids(http, auth, max_age_s=90 * 60) == ids(refund, fresh)
    assert await _ids(http, auth, state="decided") == ids(decided)
    assert await _ids(http, auth, state="claimed") == ids(fresh)
    assert await _ids(http, auth, state="expired") == []


async def test_list_pages_with_an_opaque_cursor_stable_under_inserts(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any
) -> None:
    queue = [await reviews.add(store, minutes_ago=50 - m) for m in range(5)]

    first = (await http.get("/v1/reviews", params={"limit": 2}, headers=auth())).json()
    newcomer = await reviews.add(store, minutes_ago=0)
    second = (
        await http.get(
            "/v1/reviews", params={"limit": 2, "cursor": first["next_cursor"]}, headers=auth()
        )
    ).json()
    third = (
        await http.get(
            "/v1/reviews", params={"limit": 2, "cursor": second["next_cursor"]}, headers=auth()
        )
    ).json()

    pages = [[r["review_id"] for r in page["items"]] for page in (first, second, third)]
    assert pages == [
        [str(r.review_id) for r in queue[0:2]],
        [str(r.review_id) for r in queue[2:4]],
        [str(queue[4].review_id), str(newcomer.review_id)],
    ]
    assert third["next_cursor"] is None
    assert isinstance(first["next_cursor"], str)


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"cursor": "not-a-cursor"}, ["query", "cursor"]),
        ({"cursor": "W10"}, ["query", "cursor"]),  # base64 of "[]"
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 201}, ["query", "limit"]),
        ({"state": "lost"}, ["query", "state"]),
        ({"priority": "critical"}, ["query", "priority", 0]),
        ({"min_age_s": -1}, ["query", "min_age_s"]),
    ],
)
async def test_a_malformed_list_query_is_422(
    http: httpx.AsyncClient, auth: Any, params: dict[str, Any], loc: list[Any]
) -> None:
    response = await http.get("/v1/reviews", params=params, headers=auth())

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [loc]


# -- history ------------------------------------------------------------------------------


async def test_history_records_who_did_what_when_and_why(
    http: httpx.AsyncClient, store: SqliteReviewStore, auth: Any, reviews: Any
) -> None:
    review = await reviews.add(store)
    await http.post(_claim(review), headers=auth("bob"))
    await http.delete(_claim(review), headers=auth("bob"))
    await http.post(_claim(review), headers=auth("maria"))
    edited = {
        **reviews.ORDER,
        "items": [{"description": "laptops", "quantity": 10, "unit_price": 1000.0}],
        "amount": 10000.0,
    }
    decided = await http.post(
        _decision(review),
        json={"decision": "edit", "edited_action": edited, "comment": "ten is enough"},
        headers=auth("maria"),
    )

    history = (await http.get(f"/v1/reviews/{review.review_id}/history", headers=auth())).json()

    assert [(h["action"], h["actor"]) for h in history] == [
        ("requested", "workflow"),
        ("claimed", "bob"),
        ("released", "bob"),
        ("claimed", "maria"),
        ("decided", "maria"),
    ]
    assert history[0]["detail"]["rule"] == review.rule
    assert history[-1]["at"] == decided.json()["decided_at"]
    assert history[-1]["detail"] == {
        "decision": "edit",
        "comment": "ten is enough",
        "edited_fields": {
            "amount": {"from": 12000.0, "to": 10000.0},
            "items": {"from": reviews.ORDER["items"], "to": edited["items"]},
        },
    }
    times = [datetime.fromisoformat(h["at"]) for h in history[1:]]
    assert times == sorted(times)


# -- the page -----------------------------------------------------------------------------


async def test_the_reviewer_page_and_its_assets_are_served_without_a_token(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/reviewer")
    script = await http.get("/reviewer/static/reviewer.js")
    styles = await http.get("/reviewer/static/reviewer.css")

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/reviewer/static/reviewer.js"' in page.text
    assert script.status_code == 200
    assert "sessionStorage" in script.text
    assert "innerHTML" not in script.text  # API values are only ever written as text
    assert styles.status_code == 200
    assert (await http.get("/reviewer/static/nope.js")).status_code == 404


@pytest.mark.parametrize("query", ["tenant=ac%00me", "workflow=re%00fund", "tenant=Acme%0A"])
async def test_a_malformed_filter_is_refused_not_a_server_error(
    http: httpx.AsyncClient, auth: Any, query: str
) -> None:
    """A NUL byte in ``?tenant=`` was echoed into the 403's WWW-Authenticate header, an
    invalid header the server answered with a 500: filters are now validated (422)."""
    response = await http.get(f"/v1/reviews?{query}", headers=auth())
    assert response.status_code == 422, response.text
