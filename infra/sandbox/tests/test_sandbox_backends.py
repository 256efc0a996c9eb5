"""The sandbox's read-only backends: knowledge base, CRM, procurement policy, quotes."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import httpx
import pytest
from pactmesh_sandbox.api.deps import PRINCIPAL_HEADER, TENANT_HEADER
from pactmesh_sandbox.catalog import APPROVAL_LIMIT, CARRIERS


async def _json(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


async def test_kb_search_ranks_the_password_article_first(client: httpx.AsyncClient) -> None:
    hits = (
        await _json(await client.get("/kb/search", params={"q": "How do I reset my password?"}))
    )["hits"]
    assert hits[0]["id"] == "kb-001"
    assert hits[0]["score"] == 1.0
    assert all(a["score"] >= b["score"] for a, b in pairwise(hits))


async def test_kb_search_honours_the_limit_and_may_find_nothing(
    client: httpx.AsyncClient,
) -> None:
    one = await _json(
        await client.get("/kb/search", params={"q": "order billing plan", "limit": 1})
    )
    assert len(one["hits"]) == 1
    none = await _json(await client.get("/kb/search", params={"q": "xylophone quantum"}))
    assert none == {"hits": []}


async def test_crm_finds_a_known_order(client: httpx.AsyncClient) -> None:
    assert await _json(await client.get("/crm/orders/4411")) == {
        "order_id": "4411",
        "status": "shipped",
        "total": 129.0,
        "currency": "USD",
        "items": ["wireless headphones"],
        "customer_id": "C-1001",
    }


async def test_crm_unknown_order_is_404(client: httpx.AsyncClient) -> None:
    body = await _json(await client.get("/crm/orders/9999"), 404)
    assert body == {"detail": "order 9999 not found"}


async def test_another_tenants_order_is_not_found_and_cannot_be_refunded(
    client: httpx.AsyncClient,
) -> None:
    globex = {TENANT_HEADER: "globex", PRINCIPAL_HEADER: "gus"}
    assert (await client.get("/crm/orders/5005", headers=globex)).status_code == 200
    # acme (the client's tenant) asks for globex's order: as if it did not exist
    body = await _json(await client.get("/crm/orders/5005"), 404)
    assert body == {"detail": "order 5005 not found"}
    refund = {"order_id": "5005", "amount": 10.0, "currency": "USD", "reason": "x"}
    response = await client.post(
        "/payments/refunds", json=refund, headers={"Idempotency-Key": "steal-1"}
    )
    assert response.status_code == 404
    # and globex has no order 4411 of acme's
    assert (await client.get("/crm/orders/4411", headers=globex)).status_code == 404


async def test_a_call_for_no_tenant_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/crm/orders/4411", headers={TENANT_HEADER: ""})
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("request_body", "flags"),
    [
        ({"amount": 2_500.0, "text": "laptops from Dell"}, []),
        ({"amount": APPROVAL_LIMIT}, []),
        ({"amount": 30_000}, ["amount 30000 exceeds the approval limit 10000"]),
        ({"amount": 500.0, "text": "bolts from ShadyParts Ltd"}, ["vendor shadyparts is blocked"]),
        ({"amount": 500.0, "vendor": "ShadyParts"}, ["vendor shadyparts is blocked"]),
        ({"text": "chairs"}, ["no amount stated"]),
        (
            {
                "amount": 12_000.5,
                "text": "shadyparts",
                "currency": "EUR",
                "items": [{"description": "bolts", "quantity": 100, "unit_price": 0.05}],
            },
            ["amount 12000.5 exceeds the approval limit 10000", "vendor shadyparts is blocked"],
        ),
    ],
)
async def test_procurement_flags_what_breaks_policy(
    client: httpx.AsyncClient, request_body: dict[str, Any], flags: list[str]
) -> None:
    result = await _json(await client.post("/procurement/check", json=request_body))
    assert result == {"within_policy": not flags, "flags": flags, "approval_limit": APPROVAL_LIMIT}


@pytest.mark.parametrize(
    "request_body",
    [{"amount": -1}, {"amount": "30000"}, {"amount": 1, "colour": "red"}, {"currency": "usd"}],
)
async def test_requests_are_strict(client: httpx.AsyncClient, request_body: dict[str, Any]) -> None:
    await _json(await client.post("/procurement/check", json=request_body), 422)


async def test_quotes_are_deterministic_per_carrier_and_shipment(
    client: httpx.AsyncClient,
) -> None:
    async def quote(carrier: str, shipment: str) -> dict[str, Any]:
        response = await client.post(f"/carriers/{carrier}/quotes", json={"shipment_id": shipment})
        result: dict[str, Any] = await _json(response)
        return result

    first = [await quote(c, "SH-77") for c in CARRIERS]
    assert first == [await quote(c, "SH-77") for c in CARRIERS]
    assert [q["carrier"] for q in first] == list(CARRIERS)
    assert len({q["quote_id"] for q in first}) == 3
    assert all(800 <= q["cost"] <= 800 + 255 * 10 and 2 <= q["days"] <= 7 for q in first)
    assert first != [await quote(c, "SH-78") for c in CARRIERS]


async def test_unknown_carrier_is_404(client: httpx.AsyncClient) -> None:
    body = await _json(
        await client.post("/carriers/slowboat/quotes", json={"shipment_id": "S"}), 404
    )
    assert body["detail"].startswith("carrier slowboat not found")


async def test_health(client: httpx.AsyncClient) -> None:
    assert await _json(await client.get("/health/live")) == {"status": "ok"}
    assert await _json(await client.get("/health/ready")) == {"status": "ok"}
