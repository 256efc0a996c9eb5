"""``/v1/requests`` without Kafka: the app's lifespan (which starts the broker) is never
entered; the request store is supplied directly and the publisher is a fake. Tokens come
from the development issuer, as a real client's would."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    Channel,
    Outcome,
    RequestStatus,
    WorkflowProgress,
    WorkflowResult,
    WorkflowToken,
)
from pactmesh_intake.adapters.sqlite_store import open_sqlite_store
from pactmesh_intake.api.deps import get_store
from pactmesh_intake.app import create_app
from pactmesh_intake.domain.requests import ResultView, Transition
from pactmesh_intake.runtime import Runtime
from pactmesh_intake.settings import Settings
from pactmesh_intake.testing import FakePublisher
from pactmesh_kit.auth.devissuer import DevIssuer
from pactmesh_kit.auth.testing import bearer

PUBLIC_URL = "https://intake.example"
LIMIT = 4096


class UnusedStore:
    """Stands in for the store where a request must be refused before reaching it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used ({name}) for an invalid request")


class BrokenStore:
    """A store whose database is down."""

    def __getattr__(self, name: str) -> Any:
        async def fail(*_args: Any, **_kwargs: Any) -> Any:
            raise ConnectionError("database unreachable")

        return fail


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {"public_url": PUBLIC_URL, "max_body_bytes": LIMIT, **overrides}
    return Settings(data_dir=tmp_path, **fields)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path)


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def acme(settings: Settings) -> dict[str, str]:
    """A requester of tenant acme (support-triage only)."""
    return bearer(settings, tenant="acme", subject="alice")


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # FastAPI resolves StoreDep before it validates the body, and outside the lifespan
    # the real dependency raises (500): the stand-in lets validation speak, and fails
    # the test if an invalid request ever reaches the store.
    app.dependency_overrides[get_store] = UnusedStore
    yield TestClient(app)  # not entered: the lifespan would start Kafka
    app.dependency_overrides.clear()


@pytest.fixture
def publisher(app: FastAPI) -> FakePublisher:
    fake = FakePublisher()
    runtime: Runtime = app.state.runtime
    runtime.publisher = fake  # type: ignore[assignment]
    return fake


@pytest.fixture
async def http(
    app: FastAPI, tmp_path: Path, publisher: FakePublisher
) -> AsyncIterator[httpx.AsyncClient]:
    runtime: Runtime = app.state.runtime
    async with open_sqlite_store(tmp_path / "intake.sqlite3") as store:
        runtime.store = store
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield client
        runtime.store = None


def _field_errors(response: httpx.Response) -> list[tuple[list[str | int], str]]:
    assert response.status_code == 422, response.text
    return [(e["loc"], e["msg"]) for e in response.json()["detail"]]


# -- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"text": "hi", "priority": "high"},
            [(["body", "priority"], "Extra inputs are not permitted")],
        ),
        ({}, [(["body", "text"], "Field required")]),
        ({"metadata": {"k": "v"}}, [(["body", "text"], "Field required")]),
        (
            {"text": "x" * 20_001},
            [(["body", "text"], "String should have at most 20000 characters")],
        ),
        ({"text": ""}, [(["body", "text"], "String should have at least 1 character")]),
        ({"text": 5}, [(["body", "text"], "Input should be a valid string")]),
        (
            {"text": "hi", "metadata": {"k": 1}},
            [(["body", "metadata", "k"], "Input should be a valid string")],
        ),
        (
            {"text": "hi", "metadata": "k=v"},
            [(["body", "metadata"], "Input should be a valid dictionary")],
        ),
    ],
    ids=[
        "unknown-field",
        "missing-text",
        "missing-text-with-metadata",
        "text-too-long",
        "text-empty",
        "text-wrong-type",
        "metadata-value-wrong-type",
        "metadata-wrong-type",
    ],
)
def test_invalid_body_is_refused_with_each_field_error(
    tmp_path: Path, body: dict[str, Any], expected: list[tuple[list[str], str]]
) -> None:
    settings = _settings(tmp_path, max_body_bytes=64 * 1024)
    app = create_app(settings)
    app.dependency_overrides[get_store] = UnusedStore
    response = TestClient(app).post("/v1/requests", json=body, headers=bearer(settings))
    assert _field_errors(response) == expected


def test_every_field_error_is_listed(client: TestClient, acme: dict[str, str]) -> None:
    response = client.post(
        "/v1/requests",
        json={"text": 5, "requested_workflow": "Not A Workflow", "extra": 1},
        headers=acme,
    )
    assert sorted(loc[-1] for loc, _ in _field_errors(response)) == [
        "extra",
        "requested_workflow",
        "text",
    ]


def test_body_that_is_not_json_is_refused(client: TestClient, acme: dict[str, str]) -> None:
    response = client.post(
        "/v1/requests",
        content=b"{not json",
        headers={"content-type": "application/json", **acme},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_text_with_unpaired_surrogates_is_refused(client: TestClient, acme: dict[str, str]) -> None:
    response = client.post(
        "/v1/requests",
        content=b'{"text": "broken \\ud800 text"}',
        headers={"content-type": "application/json", **acme},
    )
    [(loc, msg)] = _field_errors(response)
    assert loc == ["body", "text"]
    assert "unable to parse raw data as a unicode string" in msg


def test_unknown_request_id_must_be_a_uuid(client: TestClient, acme: dict[str, str]) -> None:
    [(loc, msg)] = _field_errors(client.get("/v1/requests/not-a-uuid", headers=acme))
    assert loc == ["path", "request_id"]
    assert msg.startswith("Input should be a valid UUID")


@pytest.mark.parametrize("key", ["", "two words", 'a"quote', "x" * 256, "ünïcode"])
def test_a_malformed_idempotency_key_is_refused(
    client: TestClient, acme: dict[str, str], key: str
) -> None:
    response = client.post(
        "/v1/requests",
        json={"text": "hi"},
        headers={**acme, "Idempotency-Key": key.encode()},
    )
    [(loc, _)] = _field_errors(response)
    assert loc == ["header", "Idempotency-Key"]


# -- authentication and authorisation -------------------------------------------------


def _routes(request_id: uuid.UUID) -> list[tuple[str, str]]:
    return [
        ("POST", "/v1/requests"),
        ("GET", f"/v1/requests/{request_id}"),
        ("GET", f"/v1/requests/{request_id}/events"),
    ]


@pytest.mark.parametrize("route", range(3), ids=["submit", "status", "events"])
def test_every_route_needs_a_valid_token(
    client: TestClient, settings: Settings, tmp_path: Path, route: int
) -> None:
    method, path = _routes(uuid.uuid4())[route]
    # Signed with the key intake trusts, so only the issuer is wrong.
    elsewhere = DevIssuer(settings.auth_key_dir, issuer="someone-else", audience="pactmesh")
    forged = DevIssuer(tmp_path / "forged", issuer=settings.auth_issuer, audience="pactmesh")
    tokens = {
        "none": ({}, "bearer token required"),
        "expired": (bearer(settings, ttl_s=-3600), "token expired"),
        "another issuer": (
            {"Authorization": f"Bearer {elsewhere.mint(subject='eve', tenant='acme')}"},
            "token from another issuer",
        ),
        "another key": (
            {"Authorization": f"Bearer {forged.mint(subject='eve', tenant='acme')}"},
            "invalid token: Signature verification failed",
        ),
        "garbage": ({"Authorization": "Bearer not-a-jwt"}, "malformed token"),
    }
    for name, (headers, detail) in tokens.items():
        response = client.request(method, path, json={"text": "hi"}, headers=headers)
        assert response.status_code == 401, name
        assert response.json()["detail"].startswith(detail), name
        assert response.headers["www-authenticate"].startswith("Bearer"), name


@pytest.mark.parametrize("route", range(3), ids=["submit", "status", "events"])
def test_a_token_without_the_capability_is_403(
    client: TestClient, settings: Settings, route: int
) -> None:
    method, path = _routes(uuid.uuid4())[route]
    reviewer = bearer(settings, tenant="acme", roles=("reviewer",))

    response = client.request(method, path, json={"text": "hi"}, headers=reviewer)

    assert response.status_code == 403
    capability = "requests:submit" if method == "POST" else "requests:read"
    assert response.json() == {"detail": f"{capability!r} is not granted to this token"}
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("roles", "scopes", "workflow", "detail"),
    [
        (("requester",), (), "refund", "'alice' may not start workflow 'refund'"),
        (("upstream-system",), (), None, "'alice' may not start any workflow"),
        (
            ("upstream-system",),
            ("workflow:procurement",),
            "refund",
            "'alice' may not start workflow 'refund'",
        ),
    ],
    ids=["workflow-not-granted", "no-workflow-at-all", "another-workflow-granted"],
)
async def test_a_workflow_the_principal_may_not_start_is_403(
    http: httpx.AsyncClient,
    settings: Settings,
    publisher: FakePublisher,
    roles: tuple[str, ...],
    scopes: tuple[str, ...],
    workflow: str | None,
    detail: str,
) -> None:
    token = bearer(settings, tenant="acme", roles=roles, scopes=scopes, subject="alice")
    body: dict[str, Any] = {"text": "refund order 4411"}
    if workflow:
        body["requested_workflow"] = workflow

    response = await http.post("/v1/requests", json=body, headers=token)

    assert response.status_code == 403
    assert response.json() == {"detail": detail}
    assert publisher.events == []


async def test_a_granted_workflow_is_accepted_for_the_tokens_tenant_and_principal(
    http: httpx.AsyncClient, settings: Settings, publisher: FakePublisher
) -> None:
    token = bearer(
        settings, tenant="globex", roles=("requester",), scopes=("workflow:refund",), subject="bo"
    )

    response = await http.post(
        "/v1/requests",
        json={"text": "refund order 4411", "requested_workflow": "refund"},
        headers=token,
    )

    assert response.status_code == 202, response.text
    [event] = publisher.events
    assert event.tenant == "globex"
    assert event.principal == Principal(
        subject="bo", roles=("requester",), scopes=("workflow:refund",)
    )


async def test_another_tenants_request_is_not_found(
    http: httpx.AsyncClient, acme: dict[str, str], settings: Settings
) -> None:
    request_id = (await http.post("/v1/requests", json={"text": "hi"}, headers=acme)).json()[
        "request_id"
    ]
    globex = bearer(settings, tenant="globex", roles=("auditor",))

    for path in (f"/v1/requests/{request_id}", f"/v1/requests/{request_id}/events"):
        theirs = await http.get(path, headers=globex)
        unknown = await http.get(path.replace(request_id, str(uuid.uuid4())), headers=globex)
        assert theirs.status_code == unknown.status_code == 404
        assert theirs.json()["detail"] == f"no request {request_id}"  # as for an unknown id
    assert (await http.get(f"/v1/requests/{request_id}", headers=acme)).status_code == 200


# -- submit and read back -------------------------------------------------------------


async def test_submit_then_read_back(
    http: httpx.AsyncClient, publisher: FakePublisher, acme: dict[str, str]
) -> None:
    response = await http.post(
        "/v1/requests",
        json={"text": "refund order 4411", "metadata": {"ticket": "T-1"}},
        headers=acme,
    )

    assert response.status_code == 202, response.text
    receipt = response.json()
    request_id = uuid.UUID(receipt["request_id"])
    assert receipt["status"] == "accepted"
    assert receipt["status_url"] == f"{PUBLIC_URL}/v1/requests/{request_id}"
    assert response.headers["location"] == receipt["status_url"]
    [event] = publisher.events
    assert (event.workflow_id, event.tenant) == (request_id, "acme")
    assert event.principal == Principal(subject="alice", roles=("requester",))

    view = (await http.get(f"/v1/requests/{request_id}", headers=acme)).json()
    assert view["status"] == RequestStatus.ACCEPTED.value
    assert view["channel"] == Channel.HTTP.value
    assert view["tenant"] == "acme"
    assert view["result"] is None
    assert [h["status"] for h in view["history"]] == ["accepted"]


async def test_unknown_request_is_404(http: httpx.AsyncClient, acme: dict[str, str]) -> None:
    response = await http.get(f"/v1/requests/{uuid.uuid4()}", headers=acme)
    assert response.status_code == 404


async def test_a_failed_publish_is_still_accepted_and_kept_for_the_relay(
    http: httpx.AsyncClient, publisher: FakePublisher, acme: dict[str, str]
) -> None:
    publisher.broken = True

    response = await http.post("/v1/requests", json={"text": "hello"}, headers=acme)

    assert response.status_code == 202
    [refused] = publisher.refused
    assert response.json()["request_id"] == str(refused.workflow_id)
    view = await http.get(f"/v1/requests/{refused.workflow_id}", headers=acme)
    assert view.json()["status"] == "accepted"


async def test_a_store_failure_is_503_and_nothing_is_published(
    app: FastAPI, http: httpx.AsyncClient, publisher: FakePublisher, acme: dict[str, str]
) -> None:
    app.dependency_overrides[get_store] = BrokenStore

    response = await http.post("/v1/requests", json={"text": "hello"}, headers=acme)

    assert response.status_code == 503
    assert response.json() == {"detail": "could not enqueue"}
    assert publisher.events == publisher.refused == []


def test_store_is_required_outside_the_lifespan(app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    with pytest.raises(RuntimeError, match="not open"):
        runtime.require_store()


# -- Idempotency-Key ------------------------------------------------------------------


async def test_the_same_key_and_body_get_the_same_request_once(
    http: httpx.AsyncClient, publisher: FakePublisher, acme: dict[str, str]
) -> None:
    body = {"text": "refund order 4411", "metadata": {"ticket": "T-1"}}
    first = await http.post("/v1/requests", json=body, headers={**acme, "Idempotency-Key": "k-1"})
    # the same body spelled differently, the key as a structured-field string
    again = await http.post(
        "/v1/requests",
        content=json.dumps({"metadata": {"ticket": "T-1"}, "text": "refund order 4411"}, indent=2),
        headers={**acme, "Idempotency-Key": '"k-1"', "content-type": "application/json"},
    )

    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert first.headers["location"] == again.headers["location"]
    assert len(publisher.events) == 1


async def test_the_same_key_with_another_body_is_409(
    http: httpx.AsyncClient, publisher: FakePublisher, acme: dict[str, str]
) -> None:
    keyed = {**acme, "Idempotency-Key": "k-1"}
    first = await http.post("/v1/requests", json={"text": "refund order 4411"}, headers=keyed)

    response = await http.post("/v1/requests", json={"text": "refund order 4412"}, headers=keyed)

    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail == (
        f"Idempotency-Key 'k-1' was already used for request {first.json()['request_id']} "
        "with a different body; use a new key for a new request"
    )
    assert len(publisher.events) == 1


async def test_keys_belong_to_their_tenant(
    http: httpx.AsyncClient, publisher: FakePublisher, acme: dict[str, str], settings: Settings
) -> None:
    globex = bearer(settings, tenant="globex")
    body = {"text": "hello"}

    ours = await http.post("/v1/requests", json=body, headers={**acme, "Idempotency-Key": "k"})
    theirs = await http.post("/v1/requests", json=body, headers={**globex, "Idempotency-Key": "k"})

    assert ours.json()["request_id"] != theirs.json()["request_id"]
    assert [e.tenant for e in publisher.events] == ["acme", "globex"]


async def test_concurrent_duplicates_over_http_make_one_request(
    http: httpx.AsyncClient, publisher: FakePublisher, acme: dict[str, str]
) -> None:
    keyed = {**acme, "Idempotency-Key": "k-race"}

    responses = await asyncio.gather(
        *(http.post("/v1/requests", json={"text": "hello"}, headers=keyed) for _ in range(10))
    )

    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["request_id"] for r in responses}) == 1
    assert len(publisher.events) == 1


# -- body size ------------------------------------------------------------------------


def _big_body() -> bytes:
    return json.dumps({"text": "x" * LIMIT * 4}).encode()


async def test_a_declared_length_over_the_limit_is_413_before_anything_else(
    http: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    body = _big_body()

    response = await http.post(
        "/v1/requests", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/plain")
    assert publisher.events == []


async def test_a_chunked_body_is_cut_off_at_the_limit(
    http: httpx.AsyncClient, publisher: FakePublisher, acme: dict[str, str]
) -> None:
    body = _big_body()
    sent: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 512):
            sent.append(start)
            yield body[start : start + 512]

    response = await http.post(
        "/v1/requests", content=chunks(), headers={"content-type": "application/json", **acme}
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"detail": "Content Too Large"}
    assert len(sent) <= LIMIT // 512 + 2  # the rest was never read
    assert publisher.events == []


async def test_a_body_at_the_limit_is_accepted(
    http: httpx.AsyncClient, acme: dict[str, str]
) -> None:
    body = json.dumps({"text": "x" * (LIMIT - 20)}).encode()
    assert len(body) <= LIMIT

    response = await http.post(
        "/v1/requests", content=body, headers={"content-type": "application/json", **acme}
    )

    assert response.status_code == 202


# -- rate limits ----------------------------------------------------------------------


async def test_a_tenant_over_its_rate_limit_gets_429_with_retry_after(tmp_path: Path) -> None:
    settings = _settings(tmp_path, submit_rate_limit="2/minute", read_rate_limit="3/minute")
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    runtime.publisher = FakePublisher()  # type: ignore[assignment]
    acme, globex = bearer(settings, tenant="acme"), bearer(settings, tenant="globex")
    async with open_sqlite_store(tmp_path / "intake.sqlite3") as store:
        runtime.store = store
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            submits = [
                await http.post("/v1/requests", json={"text": "hi"}, headers=acme) for _ in range(3)
            ]
            other = await http.post("/v1/requests", json={"text": "hi"}, headers=globex)
            status_url = f"/v1/requests/{submits[0].json()['request_id']}"
            reads = [await http.get(status_url, headers=acme) for _ in range(4)]

    assert [r.status_code for r in submits] == [202, 202, 429]
    assert other.status_code == 202  # another tenant has its own budget
    refused = submits[-1]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.json()["detail"] == (
        "tenant 'acme' is over its submit rate limit (2 per 1 minute); "
        f"retry in {refused.headers['retry-after']} s"
    )
    assert [r.status_code for r in reads] == [200, 200, 200, 429]


def test_rate_limits_are_checked_when_settings_load() -> None:
    with pytest.raises(ValueError, match="submit_rate_limit"):
        Settings(submit_rate_limit="lots")


# -- GET /v1/requests/{id}/events -----------------------------------------------------


def _sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) of each server-sent event of ``body``; pings are comments."""
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ":" in line[:6])
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def _feed_when_followed(runtime: Runtime, workflow_id: uuid.UUID, live: list[Any]) -> None:
    for _ in range(500):  # polled, with a 5 s deadline
        if runtime.live.following(workflow_id):
            break
        await asyncio.sleep(0.01)
    for event in live:
        runtime.live.publish(event)


def _what(data: dict[str, Any]) -> Any:
    """The telling field of an event's data: a status, a token's text, an outcome."""
    return next(data[k] for k in ("status", "text", "outcome") if k in data)


def _result(workflow_id: uuid.UUID) -> Envelope[Any]:
    return new_event(
        WorkflowResult(
            workflow="support-triage", outcome=Outcome.SUCCEEDED, output={"reply": "Open Settings"}
        ),
        workflow_id=workflow_id,
        tenant="acme",
        principal=Principal(subject="alice", roles=("requester",)),
    )


@pytest.mark.parametrize("result_first", [True, False], ids=["result-first", "delivered-first"])
async def test_events_replay_the_history_then_stream_live_until_the_result(
    app: FastAPI, http: httpx.AsyncClient, acme: dict[str, str], result_first: bool
) -> None:
    runtime: Runtime = app.state.runtime
    posted = await http.post("/v1/requests", json={"text": "reset?"}, headers=acme)
    workflow_id = uuid.UUID(posted.json()["request_id"])
    routed = new_event(
        WorkflowProgress(status=RequestStatus.ROUTED, service="routing"),
        workflow_id=workflow_id,
        tenant="acme",
        principal=Principal(subject="alice", roles=("requester",)),
    )
    delivered = routed.follow(WorkflowProgress(status=RequestStatus.DELIVERED, service="delivery"))
    # Delivery publishes the result before `delivered`, on another topic: either may
    # reach intake first.
    ending = (
        [_result(workflow_id), delivered] if result_first else [delivered, _result(workflow_id)]
    )
    live = [
        routed,  # recorded and received live: sent once
        routed.follow(WorkflowProgress(status=RequestStatus.RUNNING, service="orchestrator")),
        *(
            routed.follow(WorkflowToken(seq=i, text=t, step="draft", final=i == 2))
            for i, t in enumerate(["Open", " Settings", ""])
        ),
        *ending,
        routed.follow(WorkflowToken(seq=9, text="after the end", step="draft", final=True)),
    ]
    await runtime.require_store().record(
        Transition(
            event_id=routed.event_id,
            request_id=workflow_id,
            status=RequestStatus.ROUTED,
            service="routing",
            at=routed.occurred_at,
        )
    )

    feeding = asyncio.create_task(_feed_when_followed(runtime, workflow_id, live))
    response = await http.get(f"/v1/requests/{workflow_id}/events", headers=acme)
    await feeding

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _sse(response.text)
    assert [(e, _what(d), d.get("replayed")) for e, d in events] == [
        ("progress", "accepted", True),
        ("progress", "routed", True),
        ("progress", "running", False),
        ("token", "Open", None),
        ("token", " Settings", None),
        ("token", "", None),
        ("progress", "delivered", False),
        ("result", "succeeded", None),
    ]
    assert events[-1][1]["output"] == {"reply": "Open Settings"}
    assert events[-1][1]["workflow"] == "support-triage"
    assert runtime.live.following(workflow_id) == 0
    # The store's group has not recorded `delivered` nor the result (nothing here feeds
    # it): a status read right after the stream still returns what the stream sent.
    view = (await http.get(f"/v1/requests/{workflow_id}", headers=acme)).json()
    assert view["status"] == "delivered"
    assert view["result"] == events[-1][1]


async def test_events_of_a_delivered_request_end_with_its_kept_result(
    app: FastAPI, http: httpx.AsyncClient, acme: dict[str, str]
) -> None:
    runtime: Runtime = app.state.runtime
    posted = await http.post("/v1/requests", json={"text": "reset?"}, headers=acme)
    request_id = uuid.UUID(posted.json()["request_id"])
    store = runtime.require_store()
    await store.record(
        Transition(
            event_id=uuid.uuid4(),
            request_id=request_id,
            status=RequestStatus.DELIVERED,
            service="delivery",
            at=datetime.now(UTC),
        )
    )
    await store.record_result(request_id=request_id, result=ResultView.of(_result(request_id)))

    response = await http.get(f"/v1/requests/{request_id}/events", headers=acme)

    events = _sse(response.text)
    assert [(e, d.get("status") or d.get("outcome")) for e, d in events] == [
        ("progress", "accepted"),
        ("progress", "delivered"),
        ("result", "succeeded"),
    ]
    view = (await http.get(f"/v1/requests/{request_id}", headers=acme)).json()
    assert view["result"]["output"] == {"reply": "Open Settings"}


async def test_a_stream_waits_a_bounded_time_for_a_result_that_never_comes(
    tmp_path: Path, publisher: FakePublisher
) -> None:
    settings = _settings(tmp_path, result_wait_s=0.3)
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    runtime.publisher = publisher  # type: ignore[assignment]
    token = bearer(settings, tenant="acme")
    async with open_sqlite_store(tmp_path / "intake.sqlite3") as store:
        runtime.store = store
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            posted = await http.post("/v1/requests", json={"text": "reset?"}, headers=token)
            request_id = uuid.UUID(posted.json()["request_id"])
            await store.record(
                Transition(
                    event_id=uuid.uuid4(),
                    request_id=request_id,
                    status=RequestStatus.DELIVERED,
                    service="delivery",
                    at=datetime.now(UTC),
                )
            )
            response = await http.get(f"/v1/requests/{request_id}/events", headers=token)

    assert [d["status"] for _, d in _sse(response.text)] == ["accepted", "delivered"]


async def test_events_of_an_unknown_request_are_404(
    http: httpx.AsyncClient, acme: dict[str, str]
) -> None:
    response = await http.get(f"/v1/requests/{uuid.uuid4()}/events", headers=acme)
    assert response.status_code == 404


async def test_a_stream_ends_when_delivery_is_stored_after_it_passed_the_live_feed(
    app: FastAPI, http: httpx.AsyncClient, acme: dict[str, str]
) -> None:
    """The live group may see ``delivered`` before this stream follows, and the store
    group record it only after the history was read: the stream catches up from the
    store instead of waiting forever."""
    runtime: Runtime = app.state.runtime
    posted = await http.post("/v1/requests", json={"text": "reset?"}, headers=acme)
    request_id = uuid.UUID(posted.json()["request_id"])
    store = runtime.require_store()

    async def stored_late() -> None:
        for _ in range(500):  # polled, with a 5 s deadline
            if runtime.live.following(request_id):
                break
            await asyncio.sleep(0.01)
        await store.record(
            Transition(
                event_id=uuid.uuid4(),
                request_id=request_id,
                status=RequestStatus.DELIVERED,
                service="delivery",
                at=datetime.now(UTC),
            )
        )
        await store.record_result(request_id=request_id, result=ResultView.of(_result(request_id)))

    storing = asyncio.create_task(stored_late())
    async with asyncio.timeout(20):
        response = await http.get(f"/v1/requests/{request_id}/events", headers=acme)
    await storing

    events = _sse(response.text)
    assert [(e, d.get("status") or d.get("outcome")) for e, d in events] == [
        ("progress", "accepted"),
        ("progress", "delivered"),
        ("result", "succeeded"),
    ]
