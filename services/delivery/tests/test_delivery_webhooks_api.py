"""``/v1/webhooks`` over HTTP without Kafka: the app's lifespan (which starts the broker)
is never entered; the webhook store is opened by the fixture and handed to the runtime."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pactmesh_delivery.adapters.sqlite_store import SqliteWebhookStore, open_sqlite_stores
from pactmesh_delivery.app import create_app
from pactmesh_delivery.domain.webhooks import ResultRecord
from pactmesh_delivery.runtime import Runtime
from pactmesh_delivery.settings import Settings
from pactmesh_kit.auth.testing import bearer

HOOK = {"url": "https://hooks.acme.example/pactmesh", "workflows": ["refund"]}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[SqliteWebhookStore]:
    async with open_sqlite_stores(
        settings.data_dir / "delivery.sqlite3", box=settings.secret_box()
    ) as (_, opened):
        yield opened


@pytest.fixture
def app(settings: Settings, store: SqliteWebhookStore) -> FastAPI:
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    runtime.webhooks = store
    return app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://delivery") as client:
        yield client


@pytest.fixture
def acme(settings: Settings) -> dict[str, str]:
    return bearer(settings, tenant="acme", roles=("integrator",))


@pytest.fixture
def globex(settings: Settings) -> dict[str, str]:
    return bearer(settings, tenant="globex", roles=("integrator",))


async def register(http: httpx.AsyncClient, auth: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await http.post("/v1/webhooks", json={**HOOK, **body}, headers=auth)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_registering_answers_201_with_the_secret_once(
    http: httpx.AsyncClient, acme: dict[str, str]
) -> None:
    created = await register(http, acme, description="refunds to the ledger")

    assert set(created) == {"id", "url", "workflows", "description", "created_at", "secret"}
    assert created["url"] == HOOK["url"]
    assert created["workflows"] == ["refund"]
    assert len(created["secret"]) >= 43
    listed = (await http.get("/v1/webhooks", headers=acme)).json()
    one = (await http.get(f"/v1/webhooks/{created['id']}", headers=acme)).json()
    assert listed == [one]
    assert "secret" not in one
    assert one == {k: v for k, v in created.items() if k != "secret"}


async def test_each_webhook_gets_its_own_secret(
    http: httpx.AsyncClient, acme: dict[str, str]
) -> None:
    first, second = await register(http, acme), await register(http, acme)
    assert first["secret"] != second["secret"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/webhooks"),
        ("GET", "/v1/webhooks"),
        ("GET", f"/v1/webhooks/{uuid.uuid4()}"),
        ("DELETE", f"/v1/webhooks/{uuid.uuid4()}"),
        ("GET", f"/v1/webhooks/{uuid.uuid4()}/deliveries"),
    ],
)
async def test_every_route_needs_a_valid_token(
    http: httpx.AsyncClient, settings: Settings, method: str, path: str
) -> None:
    expired = bearer(settings, tenant="acme", roles=("integrator",), ttl_s=-120)
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, expired):
        response = await http.request(method, path, json=HOOK, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_token_from_another_issuer_is_refused(
    http: httpx.AsyncClient, tmp_path: Path
) -> None:
    foreign = bearer(Settings(data_dir=tmp_path / "elsewhere"), roles=("integrator",))
    assert (await http.get("/v1/webhooks", headers=foreign)).status_code == 401


async def test_managing_webhooks_needs_the_capability(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    requester = bearer(settings, tenant="acme", roles=("requester", "reviewer"))
    assert (await http.post("/v1/webhooks", json=HOOK, headers=requester)).status_code == 403
    response = await http.get("/v1/webhooks", headers=requester)
    assert response.status_code == 403
    assert "webhooks:manage" in response.json()["detail"]


async def test_another_tenants_webhook_is_not_found(
    http: httpx.AsyncClient, acme: dict[str, str], globex: dict[str, str]
) -> None:
    created = await register(http, acme)
    path = f"/v1/webhooks/{created['id']}"

    assert (await http.get("/v1/webhooks", headers=globex)).json() == []
    assert (await http.get(path, headers=globex)).status_code == 404
    assert (await http.get(f"{path}/deliveries", headers=globex)).status_code == 404
    assert (await http.delete(path, headers=globex)).status_code == 404
    assert (await http.get(path, headers=acme)).status_code == 200


async def test_deleting_answers_204_then_the_webhook_is_gone(
    http: httpx.AsyncClient, acme: dict[str, str]
) -> None:
    path = f"/v1/webhooks/{(await register(http, acme))['id']}"

    deleted = await http.delete(path, headers=acme)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await http.get(path, headers=acme)).status_code == 404
    assert (await http.delete(path, headers=acme)).status_code == 404
    assert (await http.get("/v1/webhooks", headers=acme)).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.acme.example/in"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "https://"}, "url"),
        ({}, "url"),
        ({"url": "https://h.example", "workflows": ["teleportation"]}, "workflows"),
        ({"url": "https://h.example", "workflows": "refund"}, "workflows"),
        ({"url": "https://h.example", "secret": "mine"}, "secret"),
        ({"url": "https://h.example", "description": "x" * 501}, "description"),
    ],
)
async def test_a_bad_registration_is_422_with_the_field(
    http: httpx.AsyncClient, acme: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = await http.post("/v1/webhooks", json=body, headers=acme)
    assert response.status_code == 422
    assert [e["loc"][1] for e in response.json()["detail"]] == [field]
    assert (await http.get("/v1/webhooks", headers=acme)).json() == []


async def test_a_malformed_webhook_id_is_422(http: httpx.AsyncClient, acme: dict[str, str]) -> None:
    assert (await http.get("/v1/webhooks/not-a-uuid", headers=acme)).status_code == 422


async def test_the_delivery_log_shows_queued_results(
    http: httpx.AsyncClient, acme: dict[str, str], store: SqliteWebhookStore
) -> None:
    created = await register(http, acme)
    event_id, workflow_id = uuid.uuid4(), uuid.uuid4()
    await store.enqueue(
        ResultRecord(
            result_event_id=event_id,
            workflow_id=workflow_id,
            workflow="refund",
            tenant="acme",
            body=b"{}",
            key=None,
            headers={},
            source_topic="pactmesh.results.refund",
            source_partition=0,
            source_offset=0,
            trace_context={},
        ),
        now=1_800_000_000.0,
    )

    response = await http.get(f"/v1/webhooks/{created['id']}/deliveries", headers=acme)

    assert response.status_code == 200
    [delivery] = response.json()
    assert delivery["result_event_id"] == str(event_id)
    assert delivery["workflow_id"] == str(workflow_id)
    assert (delivery["state"], delivery["attempts"], delivery["last_status"]) == (
        "pending",
        0,
        None,
    )
    assert delivery["next_attempt_at"].startswith("2027-01-15T08:00:00")
    bad_limit = f"/v1/webhooks/{created['id']}/deliveries?limit=0"
    assert (await http.get(bad_limit, headers=acme)).status_code == 422


async def test_the_openapi_document_names_every_answer(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    expected = {
        ("/v1/webhooks", "post"): {"201", "400", "401", "403", "409", "422"},
        ("/v1/webhooks", "get"): {"200", "401", "403"},
        ("/v1/webhooks/{webhook_id}", "get"): {"200", "401", "403", "404", "422"},
        ("/v1/webhooks/{webhook_id}", "delete"): {"204", "401", "403", "404", "422"},
        ("/v1/webhooks/{webhook_id}/deliveries", "get"): {"200", "401", "403", "404", "422"},
    }
    for (path, method), statuses in expected.items():
        assert set(paths[path][method]["responses"]) == statuses, (path, method)
    assert "secret" in schemas["WebhookCreated"]["properties"]
    assert "secret" not in schemas["Webhook"]["properties"]
    assert "bearer" in str(paths["/v1/webhooks"]["get"].get("security"))
