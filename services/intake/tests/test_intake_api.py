"""``/v1/requests`` without Kafka: the app's lifespan (which starts the broker) is never
entered; the request store is supplied directly and the publisher is a fake."""

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
from pactmesh_contracts.events import Channel, RequestStatus, WorkflowProgress, WorkflowToken
from pactmesh_intake.adapters.sqlite_store import open_store
from pactmesh_intake.api.deps import get_store
from pactmesh_intake.app import create_app
from pactmesh_intake.domain.requests import Transition
from pactmesh_intake.runtime import Runtime
from pactmesh_intake.settings import Settings

PUBLIC_URL = "https://intake.example"


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


class UnusedStore:
    """Stands in for the store where a request must be refused before reaching it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the store was used ({name}) for an invalid request")


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path, public_url=PUBLIC_URL, default_tenant="acme"))


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
    async with open_store(tmp_path / "intake.sqlite3") as store:
        runtime.store = store
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield client
        runtime.store = None


def _field_errors(response: httpx.Response) -> list[tuple[list[str | int], str]]:
    assert response.status_code == 422, response.text
    return [(e["loc"], e["msg"]) for e in response.json()["detail"]]


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
    client: TestClient, body: dict[str, Any], expected: list[tuple[list[str], str]]
) -> None:
    assert _field_errors(client.post("/v1/requests", json=body)) == expected


def test_every_field_error_is_listed(client: TestClient) -> None:
    response = client.post(
        "/v1/requests", json={"text": 5, "requested_workflow": "Not A Workflow", "extra": 1}
    )
    assert sorted(loc[-1] for loc, _ in _field_errors(response)) == [
        "extra",
        "requested_workflow",
        "text",
    ]


def test_body_that_is_not_json_is_refused(client: TestClient) -> None:
    response = client.post(
        "/v1/requests", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_unknown_request_id_must_be_a_uuid(client: TestClient) -> None:
    [(loc, msg)] = _field_errors(client.get("/v1/requests/not-a-uuid"))
    assert loc == ["path", "request_id"]
    assert msg.startswith("Input should be a valid UUID")


async def test_submit_then_read_back(http: httpx.AsyncClient, publisher: FakePublisher) -> None:
    response = await http.post(
        "/v1/requests", json={"text": "refund order 4411", "metadata": {"ticket": "T-1"}}
    )

    assert response.status_code == 202, response.text
    receipt = response.json()
    request_id = uuid.UUID(receipt["request_id"])
    assert receipt["status"] == "accepted"
    assert receipt["status_url"] == f"{PUBLIC_URL}/v1/requests/{request_id}"
    assert response.headers["location"] == receipt["status_url"]
    [event] = publisher.events
    assert (event.workflow_id, event.tenant) == (request_id, "acme")
    assert event.principal.subject == "anonymous"

    view = (await http.get(f"/v1/requests/{request_id}")).json()
    assert view["status"] == RequestStatus.ACCEPTED.value
    assert view["channel"] == Channel.HTTP.value
    assert [h["status"] for h in view["history"]] == ["accepted"]


async def test_unknown_request_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/v1/requests/{uuid.uuid4()}")
    assert response.status_code == 404


async def test_publish_failure_is_503_and_leaves_no_record(
    http: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    publisher.broken = True

    response = await http.post("/v1/requests", json={"text": "hello"})

    assert response.status_code == 503
    assert response.json() == {"detail": "could not enqueue"}
    [refused] = publisher.refused
    assert (await http.get(f"/v1/requests/{refused.workflow_id}")).status_code == 404


def test_store_is_required_outside_the_lifespan(app: FastAPI) -> None:
    runtime: Runtime = app.state.runtime
    with pytest.raises(RuntimeError, match="not open"):
        runtime.require_store()


# -- GET /v1/requests/{id}/events -----------------------------------------------------


def _sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event, data) of each server-sent event of ``body``; pings are comments."""
    events = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ":" in line[:6])
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_events_replay_the_history_then_stream_live_until_delivered(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    runtime: Runtime = app.state.runtime
    request_id = (await http.post("/v1/requests", json={"text": "reset?"})).json()["request_id"]
    workflow_id = uuid.UUID(request_id)
    accepted = await runtime.require_store().get(workflow_id)
    assert accepted is not None
    routed = new_event(
        WorkflowProgress(status=RequestStatus.ROUTED, service="routing"),
        workflow_id=workflow_id,
        tenant="acme",
        principal=Principal(subject="anonymous", roles=("requester",)),
    )
    live = [
        routed,  # recorded and received live: sent once
        routed.follow(WorkflowProgress(status=RequestStatus.RUNNING, service="orchestrator")),
        *(
            routed.follow(WorkflowToken(seq=i, text=t, step="draft", final=i == 2))
            for i, t in enumerate(["Open", " Settings", ""])
        ),
        routed.follow(WorkflowProgress(status=RequestStatus.DELIVERED, service="delivery")),
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

    async def feed() -> None:
        for _ in range(500):  # polled, with a 5 s deadline
            if runtime.live.following(workflow_id):
                break
            await asyncio.sleep(0.01)
        for event in live:
            runtime.live.publish(event)

    feeding = asyncio.create_task(feed())
    response = await http.get(f"/v1/requests/{request_id}/events")
    await feeding

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = _sse(response.text)
    assert [
        (e, d.get("status") or d.get("text"), d["replayed"] if e == "progress" else None)
        for e, d in events
    ] == [
        ("progress", "accepted", True),
        ("progress", "routed", True),
        ("progress", "running", False),
        ("token", "Open", None),
        ("token", " Settings", None),
        ("token", "", None),
        ("progress", "delivered", False),
    ]
    assert runtime.live.following(workflow_id) == 0


async def test_events_of_a_delivered_request_end_after_the_replay(
    app: FastAPI, http: httpx.AsyncClient
) -> None:
    runtime: Runtime = app.state.runtime
    request_id = (await http.post("/v1/requests", json={"text": "reset?"})).json()["request_id"]
    await runtime.require_store().record(
        Transition(
            event_id=uuid.uuid4(),
            request_id=uuid.UUID(request_id),
            status=RequestStatus.DELIVERED,
            service="delivery",
            at=datetime.now(UTC),
        )
    )

    response = await http.get(f"/v1/requests/{request_id}/events")

    assert [d["status"] for _, d in _sse(response.text)] == ["accepted", "delivered"]


async def test_events_of_an_unknown_request_are_404(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/v1/requests/{uuid.uuid4()}/events")
    assert response.status_code == 404
