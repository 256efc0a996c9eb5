"""Switchable faults: deterministic failures, seeded random ones, hangs and drops, always
before the side effect, except ``fail_after_commit_next``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pactmesh_sandbox.api.deps import PRINCIPAL_HEADER, TENANT_HEADER
from pactmesh_sandbox.app import create_app
from pactmesh_sandbox.faults import BACKENDS, backend_of
from pactmesh_sandbox.settings import Settings
from pactmesh_sandbox.testing import SandboxAdmin, served

PO = {
    "vendor": "Dell",
    "items": [{"description": "laptop", "quantity": 25, "unit_price": 1200.0}],
    "amount": 30_000.0,
    "currency": "USD",
}


def _raise_po(client: httpx.AsyncClient, key: str) -> Any:
    return client.post("/erp/purchase-orders", json=PO, headers={"Idempotency-Key": key})


async def _statuses(client: httpx.AsyncClient, n: int, path: str = "/crm/orders/4411") -> list[int]:
    return [(await client.get(path)).status_code for _ in range(n)]


@pytest.mark.parametrize(
    ("path", "backend"),
    [
        ("/kb/search", "kb"),
        ("/crm/orders/1", "crm"),
        ("/procurement/check", "procurement"),
        ("/erp/purchase-orders/PO-1", "erp"),
        ("/carriers/oceanic/quotes", "carriers.oceanic"),
        ("/carriers/slowboat/quotes", None),
        ("/payments/refunds", "payments"),
        ("/ledger", None),
        ("/faults/kb", None),
        ("/health/ready", None),
    ],
)
def test_each_path_belongs_to_one_backend(path: str, backend: str | None) -> None:
    assert backend_of(path) == backend


async def test_fail_next_fails_exactly_that_many(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    await admin.set_faults("crm", fail_next=2)
    assert await _statuses(client, 1) == [503]
    assert (await admin.faults())["crm"]["fail_next"] == 1
    assert await _statuses(client, 3) == [503, 200, 200]
    assert (await client.get("/kb/search", params={"q": "x"})).status_code == 200


async def test_an_injected_failure_creates_nothing(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    await admin.set_faults("erp", fail_next=1, error_rate=1.0)
    assert (await _raise_po(client, "k")).status_code == 503
    assert (await _raise_po(client, "k")).status_code == 500
    assert await admin.ledger() == []
    await admin.set_faults("erp")
    assert (await _raise_po(client, "k")).status_code == 201


async def test_failing_after_commit_then_retrying_returns_the_first_result(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    await admin.set_faults("erp", fail_after_commit_next=1)
    failed = await _raise_po(client, "wf:raise")
    assert failed.status_code == 503
    [entry] = await admin.ledger()

    retried = await _raise_po(client, "wf:raise")
    assert retried.status_code == 201
    assert retried.json()["po_id"] == entry["id"]
    assert len(await admin.ledger()) == 1


async def test_error_rate_is_reproducible_from_the_seed(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    await admin.set_faults("crm", error_rate=0.5)
    first = await _statuses(client, 40)
    await admin.set_faults("crm", error_rate=0.5)
    assert await _statuses(client, 40) == first
    assert set(first) == {200, 500}
    assert 8 <= first.count(500) <= 32


async def test_each_carrier_fails_on_its_own(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    await admin.set_faults("carriers.northwind", error_rate=1.0)
    body = {"shipment_id": "SH-77"}
    assert (await client.post("/carriers/northwind/quotes", json=body)).status_code == 500
    assert (await client.post("/carriers/oceanic/quotes", json=body)).status_code == 200


async def test_latency_delays_answers(client: httpx.AsyncClient, admin: SandboxAdmin) -> None:
    await admin.set_faults("kb", latency_ms=150, latency_jitter_ms=50)
    started = time.monotonic()
    assert (await client.get("/kb/search", params={"q": "password"})).status_code == 200
    assert 0.15 <= time.monotonic() - started < 2.0


async def test_reset_heals_every_backend(client: httpx.AsyncClient, admin: SandboxAdmin) -> None:
    await admin.set_faults("crm", fail_next=5, latency_ms=10)
    await admin.reset_faults()
    assert await _statuses(client, 1) == [200]
    faults = await admin.faults()
    assert set(faults) == set(BACKENDS)
    assert all(config["fail_next"] == 0 for config in faults.values())


@pytest.mark.parametrize(
    "config",
    [{"error_rate": 0.6, "drop_rate": 0.6}, {"fail_next": -1}, {"error_rate": 2}, {"chaos": 1}],
)
async def test_impossible_faults_are_refused(
    client: httpx.AsyncClient, config: dict[str, Any]
) -> None:
    assert (await client.put("/faults/crm", json=config)).status_code == 422


async def test_unknown_backend_is_404(client: httpx.AsyncClient) -> None:
    response = await client.put("/faults/mainframe", json={})
    assert response.status_code == 404
    assert "carriers.oceanic" in response.json()["detail"]


async def test_a_hang_answers_504_once_the_sandbox_gives_up(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, hang_s=0.2))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as client,
    ):
        await SandboxAdmin(client).set_faults("erp", timeout_rate=1.0)
        assert (await _raise_po(client, "k")).status_code == 504
        assert await SandboxAdmin(client).ledger() == []


async def test_in_process_a_drop_raises_connection_reset(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    await admin.set_faults("crm", drop_rate=1.0)
    with pytest.raises(ConnectionResetError):
        await client.get("/crm/orders/4411")


async def test_over_sockets_a_drop_is_a_connection_error_and_a_hang_a_timeout(
    tmp_path: Path,
) -> None:
    app = create_app(Settings(data_dir=tmp_path, hang_s=30))
    headers = {TENANT_HEADER: "acme", PRINCIPAL_HEADER: "user-1"}
    async with (
        served(app) as url,
        httpx.AsyncClient(base_url=url, timeout=5, headers=headers) as client,
    ):
        admin = SandboxAdmin(client)
        await admin.set_faults("erp", drop_rate=1.0)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await _raise_po(client, "k")

        await admin.set_faults("erp", timeout_rate=1.0)
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            await client.post(
                "/erp/purchase-orders", json=PO, headers={"Idempotency-Key": "k"}, timeout=0.3
            )
        assert time.monotonic() - started < 5

        await admin.reset_faults()
        assert await admin.ledger() == []
        assert (await _raise_po(client, "k")).status_code == 201
    # Leaving ``served`` waited for the server to stop: the hung request had ended when
    # its client hung up, long before ``hang_s``.
    assert time.monotonic() - started < 10
