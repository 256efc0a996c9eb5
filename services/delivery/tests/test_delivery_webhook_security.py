"""Webhooks at the trust boundary: destinations refused at registration, URLs shown
redacted, the per-tenant caps, and signing secrets encrypted at rest (both stores)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from pactmesh_contracts.events import DeadLetter
from pactmesh_delivery.adapters.dispatcher import Dispatcher
from pactmesh_delivery.adapters.egress import EgressGuard, PinnedTransport
from pactmesh_delivery.adapters.secrets import KEY_FILE, PREFIX
from pactmesh_delivery.adapters.sqlite_store import open_sqlite_stores
from pactmesh_delivery.adapters.store import SQLITE_FILE, open_stores
from pactmesh_delivery.app import create_app
from pactmesh_delivery.domain.egress import IPAddress
from pactmesh_delivery.domain.webhooks import (
    DeliveryState,
    ResultRecord,
    RetryPolicy,
    WebhookCreate,
    WebhookOutbox,
)
from pactmesh_delivery.runtime import Runtime
from pactmesh_delivery.settings import Settings
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_kit.auth.testing import bearer

NOW = 1_800_000_000.0
POLICY = RetryPolicy(max_attempts=1, base_s=1.0, cap_s=1.0, attempt_timeout_s=2.0)


async def _resolve(host: str, port: int) -> list[IPAddress]:
    """A stub DNS: ``*.internal.example`` is private, ``*.example`` public."""
    if host.endswith(".internal.example"):
        return [ipaddress.ip_address("10.0.0.5")]
    if host.endswith(".example"):
        return [ipaddress.ip_address("93.184.216.34")]
    raise OSError(f"{host}: not known")


# -- the API ------------------------------------------------------------------------------


def _app(settings: Settings, store: WebhookOutbox) -> FastAPI:
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    runtime.webhooks = store
    runtime.egress = EgressGuard(allowed=settings.webhook_allowed_networks, resolver=_resolve)
    return app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, webhook_max_per_tenant=3)


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    path = settings.data_dir / SQLITE_FILE
    async with open_sqlite_stores(path, box=settings.secret_box()) as (_, store):
        transport = httpx.ASGITransport(app=_app(settings, store))
        async with httpx.AsyncClient(transport=transport, base_url="http://delivery") as client:
            yield client


def _auth(settings: Settings, tenant: str = "acme") -> dict[str, str]:
    return bearer(settings, tenant=tenant, roles=("integrator",))


async def _register(
    http: httpx.AsyncClient, settings: Settings, url: str, tenant: str = "acme"
) -> httpx.Response:
    return await http.post("/v1/webhooks", json={"url": url}, headers=_auth(settings, tenant))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/in",
        "http://[::1]/in",
        "http://2130706433/in",  # 127.0.0.1 in decimal, as URL parsers read it
        "http://0x7f.0.0.1/in",
        "http://[::ffff:127.0.0.1]/in",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0/in",
        "http://10.1.2.3/in",
        "http://192.168.0.10/in",
        "http://[fe80::1]/in",
        "http://224.0.0.1/in",
        "https://erp.internal.example/in",  # a name that resolves to a private address
        "https://user:pw@hooks.example/in",
        "ftp://hooks.example/in",
    ],
)
async def test_registration_refuses_destinations_outside_the_public_internet(
    http: httpx.AsyncClient, settings: Settings, url: str
) -> None:
    """By default (no allowed networks): 422 naming the ``url`` field."""
    response = await _register(http, settings, url)

    assert response.status_code == 422, response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["body", "url"]
    assert (await http.get("/v1/webhooks", headers=_auth(settings))).json() == []


async def test_registration_accepts_public_and_not_yet_resolvable_hosts(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    for url in ("https://hooks.example/in", "https://8.8.8.8/in", "https://later.test/in"):
        assert (await _register(http, settings, url)).status_code == 201, url


async def test_an_allowed_network_may_receive_webhooks(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, webhook_allowed_networks="127.0.0.0/8")
    path = tmp_path / SQLITE_FILE
    async with open_sqlite_stores(path, box=settings.secret_box()) as (_, store):
        transport = httpx.ASGITransport(app=_app(settings, store))
        async with httpx.AsyncClient(transport=transport, base_url="http://delivery") as http:
            assert (await _register(http, settings, "http://127.0.0.1:9000/in")).status_code == 201
            metadata = await _register(http, settings, "http://169.254.169.254/latest")
            assert metadata.status_code == 422


async def test_the_api_shows_urls_without_query_values(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    created = (await _register(http, settings, "https://hooks.example/in?token=s3cret")).json()

    shown = "https://hooks.example/in?token=redacted"
    assert created["url"] == shown
    assert [w["url"] for w in (await http.get("/v1/webhooks", headers=_auth(settings))).json()] == [
        shown
    ]
    one = await http.get(f"/v1/webhooks/{created['id']}", headers=_auth(settings))
    assert one.json()["url"] == shown


async def test_a_tenant_may_register_only_so_many_webhooks(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    created = [(await _register(http, settings, f"https://hooks.example/{n}")) for n in range(3)]
    assert [r.status_code for r in created] == [201, 201, 201]

    refused = await _register(http, settings, "https://hooks.example/4")
    assert refused.status_code == 409
    assert "at most 3 webhooks" in refused.json()["detail"]
    # Another tenant is not affected, and a deleted webhook makes room.
    assert (await _register(http, settings, "https://hooks.example/x", "globex")).status_code == 201
    first = created[0].json()["id"]
    await http.delete(f"/v1/webhooks/{first}", headers=_auth(settings))
    assert (await _register(http, settings, "https://hooks.example/4")).status_code == 201


# -- the stores ---------------------------------------------------------------------------


@pytest.fixture
def backend_settings(store_backend: StoreBackend) -> Settings:
    return Settings(**store_backend.settings())


async def _stored_secrets(settings: Settings) -> list[str]:
    """The ``secret`` column as the database holds it."""
    if settings.postgres is None:
        with sqlite3.connect(settings.data_dir / SQLITE_FILE) as conn:
            return [row[0] for row in conn.execute("SELECT secret FROM webhooks")]
    async with await psycopg.AsyncConnection.connect(settings.postgres) as conn:
        cursor = await conn.execute("SELECT secret FROM webhooks")
        return [row[0] for row in await cursor.fetchall()]


async def _insert_plain(settings: Settings, webhook_id: uuid.UUID, secret: str) -> None:
    """A webhook row as an earlier release wrote it: the secret in plain text."""
    values = (str(webhook_id), "acme", "https://hooks.example/old", "[]", "", secret, NOW)
    if settings.postgres is None:
        with sqlite3.connect(settings.data_dir / SQLITE_FILE) as conn:
            conn.execute("INSERT INTO webhooks VALUES (?, ?, ?, ?, ?, ?, ?)", values)
        return
    async with await psycopg.AsyncConnection.connect(settings.postgres) as conn:
        await conn.execute("INSERT INTO webhooks VALUES (%s, %s, %s, %s, %s, %s, %s)", values)


def _result(tenant: str = "acme") -> ResultRecord:
    return ResultRecord(
        result_event_id=uuid.uuid4(),
        workflow_id=uuid.uuid4(),
        workflow="refund",
        tenant=tenant,
        body=json.dumps({"tenant": tenant}).encode(),
        key=None,
        headers={},
        source_topic="pactmesh.results.refund",
        source_partition=0,
        source_offset=1,
        trace_context={},
    )


async def _claim(store: WebhookOutbox, **kwargs: Any) -> list[Any]:
    return await store.claim_due(
        now=NOW + 1, lease_until=NOW + 30, limit=kwargs.pop("limit", 50), max_attempts=3, **kwargs
    )


async def test_the_stored_secret_is_never_the_secret(backend_settings: Settings) -> None:
    spec = WebhookCreate.model_validate({"url": "https://hooks.example/in"})
    async with open_stores(backend_settings) as stores:
        await stores.webhooks.create_webhook(tenant="acme", spec=spec, secret="s3cret-1", now=NOW)
        await stores.webhooks.enqueue(_result(), now=NOW)
        [due] = await _claim(stores.webhooks)

    assert due.secret == "s3cret-1"
    [stored] = await _stored_secrets(backend_settings)
    assert stored.startswith(PREFIX)
    assert "s3cret-1" not in stored
    if backend_settings.postgres is None:  # SQLite: nowhere in the file either
        assert b"s3cret-1" not in (backend_settings.data_dir / SQLITE_FILE).read_bytes()
    assert (backend_settings.data_dir / KEY_FILE).stat().st_mode & 0o777 == 0o600


async def test_plain_text_secrets_of_an_earlier_release_are_sealed_on_opening(
    backend_settings: Settings,
) -> None:
    async with open_stores(backend_settings):
        pass  # the schema
    webhook_id = uuid.uuid4()
    await _insert_plain(backend_settings, webhook_id, "legacy-secret")

    async with open_stores(backend_settings) as stores:
        [stored] = await _stored_secrets(backend_settings)
        assert stored.startswith(PREFIX)
        assert "legacy-secret" not in stored
        await stores.webhooks.enqueue(_result(), now=NOW)
        [due] = await _claim(stores.webhooks)
        assert (due.webhook_id, due.secret) == (webhook_id, "legacy-secret")


async def test_keys_rotate_and_a_missing_key_fails_deliveries_without_sending(
    backend_settings: Settings,
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    spec = WebhookCreate.model_validate({"url": "https://hooks.example/in"})
    async with open_stores(_with_keys(backend_settings, old)) as stores:
        await stores.webhooks.create_webhook(tenant="acme", spec=spec, secret="rotate-me", now=NOW)
    [under_old] = await _stored_secrets(backend_settings)

    async with open_stores(_with_keys(backend_settings, f"{new},{old}")) as stores:
        [under_new] = await _stored_secrets(backend_settings)
        assert under_new != under_old  # re-sealed under the new first key
    async with open_stores(_with_keys(backend_settings, new)) as stores:
        await stores.webhooks.enqueue(_result(), now=NOW)
        [due] = await _claim(stores.webhooks)
        assert due.secret == "rotate-me"

    async with open_stores(_with_keys(backend_settings, old)) as stores:  # new key lost
        await stores.webhooks.enqueue(_result(), now=NOW)
        [due] = await _claim(stores.webhooks)
        assert due.secret is None
        sent: list[httpx.Request] = []
        dispatcher = _dispatcher(stores.webhooks, sent)
        attempt = await dispatcher.attempt(due)
        assert attempt.status is None
        assert "cannot be decrypted" in (attempt.error or "")
        assert sent == []


def _with_keys(settings: Settings, keys: str) -> Settings:
    return Settings(**{**settings.model_dump(), "webhook_secret_keys": keys})


def _dispatcher(
    outbox: WebhookOutbox,
    sent: list[httpx.Request],
    *,
    client: httpx.AsyncClient | None = None,
    dead: list[DeadLetter] | None = None,
    gate: asyncio.Event | None = None,
    **kwargs: Any,
) -> Dispatcher:
    async def receive(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if gate is not None:
            await gate.wait()
        return httpx.Response(204)

    async def dead_letter(letter: DeadLetter, key: bytes | None) -> None:
        (dead if dead is not None else []).append(letter)

    return Dispatcher(
        outbox=outbox,
        client=client or httpx.AsyncClient(transport=httpx.MockTransport(receive)),
        dead_letters=dead_letter,
        policy=POLICY,
        service="delivery",
        clock=lambda: NOW + 1,
        **kwargs,
    )


# -- dispatching --------------------------------------------------------------------------


async def test_one_tenants_backlog_leaves_slots_to_the_others(backend_settings: Settings) -> None:
    """Four slots, at most two per tenant: acme's ten slow deliveries take two, globex
    gets the other two at once, and acme never has more than two in flight."""
    spec = WebhookCreate.model_validate({"url": "https://hooks.example/in"})
    async with open_stores(backend_settings) as stores:
        store = stores.webhooks
        for tenant in ("acme", "globex"):
            await store.create_webhook(tenant=tenant, spec=spec, secret="s", now=NOW)
        for _ in range(10):
            await store.enqueue(_result("acme"), now=NOW)
        for _ in range(2):
            await store.enqueue(_result("globex"), now=NOW)
        sent: list[httpx.Request] = []
        gate = asyncio.Event()
        dispatcher = _dispatcher(store, sent, gate=gate, concurrency=4, tenant_concurrency=2)

        assert await dispatcher.dispatch_due() == 4
        async with asyncio.timeout(5):
            while len(sent) < 4:  # noqa: ASYNC110 - the mock transport records arrivals
                await asyncio.sleep(0.01)
        tenants = sorted(_tenant(r) for r in sent)
        assert tenants == ["acme", "acme", "globex", "globex"]
        gate.set()
        for _ in range(10):  # the rest, four at a time
            await dispatcher.dispatch_due()
            await dispatcher.drain(timeout_s=5)

    assert len(sent) == 12


def _tenant(request: httpx.Request) -> str:
    return str(json.loads(request.content)["tenant"])


async def test_the_store_claims_no_more_than_a_tenants_share(backend_settings: Settings) -> None:
    spec = WebhookCreate.model_validate({"url": "https://hooks.example/in"})
    async with open_stores(backend_settings) as stores:
        store = stores.webhooks
        for tenant in ("acme", "globex"):
            await store.create_webhook(tenant=tenant, spec=spec, secret="s", now=NOW)
            for _ in range(3):
                await store.enqueue(_result(tenant), now=NOW)

        claimed = await _claim(store, per_tenant=2, busy={"acme": 1})

    assert sorted(d.result.tenant for d in claimed) == ["acme", "globex", "globex"]


async def test_a_refused_destination_is_a_failed_attempt_and_the_dead_letter_is_redacted(
    backend_settings: Settings,
) -> None:
    """Registered while public, loopback when sent (the default allows no network): no
    POST, the refusal recorded, and the dead letter shows the URL without its token."""
    spec = WebhookCreate.model_validate({"url": "https://hooks.example/in?token=s3cret"})

    async def rebound(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address("127.0.0.1")]

    guard = EgressGuard(resolver=rebound)
    async with (
        open_stores(backend_settings) as stores,
        httpx.AsyncClient(transport=PinnedTransport(guard, max_connections=2)) as client,
    ):
        store = stores.webhooks
        webhook = await store.create_webhook(tenant="acme", spec=spec, secret="s", now=NOW)
        await store.enqueue(_result(), now=NOW)
        dead: list[DeadLetter] = []
        dispatcher = _dispatcher(store, [], client=client, dead=dead)
        await dispatcher.dispatch_due()
        await dispatcher.drain(timeout_s=5)
        [view] = await store.deliveries(tenant="acme", webhook_id=webhook.id, limit=5) or []

    assert view.state is DeliveryState.DEAD
    assert view.last_error == "refused: hooks.example is or resolves to a loopback address"
    [letter] = dead
    assert "s3cret" not in letter.model_dump_json()
    assert letter.errors[0]["url"] == "https://hooks.example/in?token=redacted"
