"""The ledger: what tests read to count side effects."""

from __future__ import annotations

from datetime import datetime

import httpx
from pactmesh_sandbox.testing import SandboxAdmin

PO = {
    "vendor": "Dell",
    "items": [{"description": "laptop", "quantity": 25, "unit_price": 1200.0}],
    "amount": 30_000.0,
    "currency": "USD",
}
REFUND = {"order_id": "1001", "amount": 10.0, "currency": "USD", "reason": "late"}


async def _effects(client: httpx.AsyncClient) -> None:
    for key in ("a", "b", "a"):
        headers = {"Idempotency-Key": f"po-{key}"}
        assert (await client.post("/erp/purchase-orders", json=PO, headers=headers)).is_success
    headers = {"Idempotency-Key": "refund-a"}
    assert (await client.post("/payments/refunds", json=REFUND, headers=headers)).is_success


async def test_the_ledger_lists_each_effect_once_in_order(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    await _effects(client)
    entries = await admin.ledger()
    assert [(e["seq"], e["kind"], e["idempotency_key"]) for e in entries] == [
        (1, "purchase_order", "po-a"),
        (2, "purchase_order", "po-b"),
        (3, "refund", "refund-a"),
    ]
    assert entries[2]["body"] == REFUND
    assert entries[2]["id"].startswith("RF-")
    assert all(datetime.fromisoformat(e["at"]).tzinfo is not None for e in entries)


async def test_the_ledger_filters_by_kind_key_and_limit(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    await _effects(client)
    assert [e["kind"] for e in await admin.ledger(kind="refund")] == ["refund"]
    assert [e["idempotency_key"] for e in await admin.ledger(idempotency_key="po-b")] == ["po-b"]
    assert [e["seq"] for e in await admin.ledger(limit=2)] == [1, 2]
    assert (await client.get("/ledger", params={"kind": "lottery"})).status_code == 422


async def test_a_purchase_order_can_be_read_back(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "wf:raise"}
    created = (await client.post("/erp/purchase-orders", json=PO, headers=headers)).json()
    assert created["status"] == "created"
    assert created["amount"] == 30_000.0

    order = (await client.get(f"/erp/purchase-orders/{created['po_id']}")).json()
    assert {k: order[k] for k in ("po_id", "status", "vendor", "amount", "currency")} == {
        "po_id": created["po_id"],
        "status": "created",
        "vendor": "Dell",
        "amount": 30_000.0,
        "currency": "USD",
    }
    assert order["items"] == PO["items"]
    assert order["idempotency_key"] == "wf:raise"
    assert (await client.get("/erp/purchase-orders/PO-NOPE")).status_code == 404
