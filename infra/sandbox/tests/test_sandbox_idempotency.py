"""Side effects happen once per idempotency key, however often a request is repeated."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pactmesh_sandbox.api.deps import PRINCIPAL_HEADER, TENANT_HEADER
from pactmesh_sandbox.app import create_app
from pactmesh_sandbox.catalog import quote
from pactmesh_sandbox.settings import Settings
from pactmesh_sandbox.store import Effect, Store
from pactmesh_sandbox.testing import SandboxAdmin

PO = {
    "vendor": "Dell",
    "items": [{"description": "laptop", "quantity": 25, "unit_price": 1200.0}],
    "amount": 30_000.0,
    "currency": "USD",
}
SH77 = quote(carrier="oceanic", shipment_id="SH-77")
EFFECTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("/erp/purchase-orders", PO, "po_id", "purchase_order"),
    (
        "/carriers/oceanic/bookings",
        {"shipment_id": "SH-77", "quote_id": SH77.quote_id, "cost": SH77.cost},
        "booking_id",
        "booking",
    ),
    (
        "/payments/refunds",
        {"order_id": "4411", "amount": 129.0, "currency": "USD", "reason": "arrived broken"},
        "refund_id",
        "refund",
    ),
]


def _post(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any],
    key: str,
    headers: dict[str, str] | None = None,
) -> Any:
    return client.post(path, json=body, headers={"Idempotency-Key": key, **(headers or {})})


@pytest.mark.parametrize(("path", "body", "id_field", "kind"), EFFECTS)
async def test_a_repeated_request_replays_the_first_response(
    client: httpx.AsyncClient,
    admin: SandboxAdmin,
    path: str,
    body: dict[str, Any],
    id_field: str,
    kind: str,
) -> None:
    first = await _post(client, path, body, "wf-1:step-1")
    again = await _post(client, path, body, "wf-1:step-1")

    assert (first.status_code, again.status_code) == (201, 201), (first.text, again.text)
    assert again.json() == first.json()
    assert first.json()[id_field]
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    [entry] = await admin.ledger(idempotency_key="wf-1:step-1")
    assert (entry["kind"], entry["id"], entry["body"]) == (kind, first.json()[id_field], body)


@pytest.mark.parametrize(("path", "body", "id_field", "kind"), EFFECTS)
async def test_a_new_key_is_a_new_effect(
    client: httpx.AsyncClient,
    admin: SandboxAdmin,
    path: str,
    body: dict[str, Any],
    id_field: str,
    kind: str,
) -> None:
    first = (await _post(client, path, body, "k-1")).json()[id_field]
    second = (await _post(client, path, body, "k-2")).json()[id_field]
    assert first != second
    assert [e["id"] for e in await admin.ledger(kind=kind)] == [first, second]


async def test_the_same_key_with_another_body_is_a_conflict(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    assert (await _post(client, "/erp/purchase-orders", PO, "k")).status_code == 201
    other = await _post(client, "/erp/purchase-orders", {**PO, "amount": 31_000.0}, "k")

    assert other.status_code == 409
    assert other.json() == {
        "detail": "Idempotency-Key 'k' was already used for a different request"
    }
    assert len(await admin.ledger()) == 1


async def test_the_same_key_on_another_endpoint_is_a_conflict(client: httpx.AsyncClient) -> None:
    assert (await _post(client, *EFFECTS[2][:2], "k")).status_code == 201
    assert (await _post(client, *EFFECTS[0][:2], "k")).status_code == 409


async def test_concurrent_retries_create_one_order(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    answers = await asyncio.gather(
        *(_post(client, "/erp/purchase-orders", PO, "wf-9:raise") for _ in range(20))
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["po_id"] for a in answers}) == 1
    assert len(await admin.ledger()) == 1


def test_the_key_check_is_atomic_across_connections(tmp_path: Path) -> None:
    """Two processes sharing the file would hold two connections: model them with
    threads, each with its own connection, all asking at once."""
    path, racers = tmp_path / "shared.sqlite3", 8
    Store(path).close()  # create the schema first, as a running sandbox would have
    start = threading.Barrier(racers)
    results: list[tuple[str, bool]] = []

    def race() -> None:
        store = Store(path)
        me = f"PO-{threading.get_ident()}"
        start.wait()
        stored = store.perform(
            kind="purchase_order",
            key="k",
            tenant="acme",
            principal="user-1",
            endpoint="POST /x",
            body=PO,
            effect=lambda: Effect(id=me, response={"po_id": me}),
        )
        store.close()
        results.append((stored.body["po_id"], stored.replayed))

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(results) == racers
    assert len({po_id for po_id, _ in results}) == 1
    assert sorted(replayed for _, replayed in results) == [False] + [True] * (racers - 1)
    store = Store(path)
    assert len(store.ledger()) == 1
    store.close()


async def test_the_idempotency_key_header_is_required(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    response = await client.post("/erp/purchase-orders", json=PO)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await admin.ledger() == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/carriers/oceanic/bookings", {**EFFECTS[1][1], "quote_id": "Q-0000000000"}, 422),
        ("/carriers/oceanic/bookings", {**EFFECTS[1][1], "cost": 1.0}, 422),
        ("/carriers/slowboat/bookings", EFFECTS[1][1], 404),
        ("/payments/refunds", {**EFFECTS[2][1], "amount": 130.0}, 422),
        ("/payments/refunds", {**EFFECTS[2][1], "currency": "EUR"}, 422),
        ("/payments/refunds", {**EFFECTS[2][1], "order_id": "9999"}, 404),
        ("/erp/purchase-orders", {**PO, "items": []}, 422),
    ],
)
async def test_refused_requests_change_nothing(
    client: httpx.AsyncClient, admin: SandboxAdmin, path: str, body: dict[str, Any], status: int
) -> None:
    response = await _post(client, path, body, "k")
    assert response.status_code == status, response.text
    assert await admin.ledger() == []
    # The key was not consumed: the corrected request goes through under it.
    corrected = next(e for e in EFFECTS if e[0].split("/")[1] == path.split("/")[1])
    assert (await _post(client, corrected[0], corrected[1], "k")).status_code == 201


async def test_keys_and_ledger_survive_a_restart(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    first = (await _post(client, "/erp/purchase-orders", PO, "k")).json()
    restarted = create_app(settings)
    async with (
        restarted.router.lifespan_context(restarted),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=restarted),
            base_url="http://sandbox",
            headers=client.headers,
        ) as again,
    ):
        replay = await _post(again, "/erp/purchase-orders", PO, "k")
        assert (replay.status_code, replay.json()) == (201, first)
        assert len(await SandboxAdmin(again).ledger()) == 1


async def test_keys_are_per_tenant_and_effects_record_whom_they_were_for(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    ours = await _post(client, "/erp/purchase-orders", PO, "k")
    theirs = await _post(
        client,
        "/erp/purchase-orders",
        PO,
        "k",
        headers={TENANT_HEADER: "globex", PRINCIPAL_HEADER: "gus"},
    )

    assert (ours.status_code, theirs.status_code) == (201, 201)
    assert ours.json()["po_id"] != theirs.json()["po_id"]  # globex got its own, not acme's
    assert [(e["tenant"], e["principal"]) for e in await admin.ledger()] == [
        ("acme", "user-1"),
        ("globex", "gus"),
    ]
    assert [e["tenant"] for e in await admin.ledger(tenant="globex")] == ["globex"]
    # and a purchase order is seen by its own tenant only
    po = ours.json()["po_id"]
    assert (await client.get(f"/erp/purchase-orders/{po}")).status_code == 200
    foreign = {TENANT_HEADER: "globex", PRINCIPAL_HEADER: "gus"}
    assert (await client.get(f"/erp/purchase-orders/{po}", headers=foreign)).status_code == 404


def test_a_version_1_file_is_migrated_with_its_keys_and_effects(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            """
            CREATE TABLE ledger (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
                id TEXT NOT NULL UNIQUE, idempotency_key TEXT NOT NULL, body TEXT NOT NULL,
                at TEXT NOT NULL);
            CREATE TABLE idempotency_keys (key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,
                status INTEGER NOT NULL, response TEXT NOT NULL, at TEXT NOT NULL);
            INSERT INTO ledger VALUES (1, 'refund', 'RF-1', 'k', '{}', '2025-01-01T00:00:00+00:00');
            INSERT INTO idempotency_keys VALUES ('k', 'f', 201, '{}', '2025-01-01T00:00:00+00:00');
            PRAGMA user_version = 1;
            """
        )
    store = Store(path)
    try:
        [entry] = store.ledger()
        assert (entry.id, entry.tenant, entry.principal) == ("RF-1", "", "")
    finally:
        store.close()
