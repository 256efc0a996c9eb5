"""Every sandbox tool over HTTP: contracts, idempotency, retries, deadlines, breakers,
concurrency limits and dropped connections, against the real sandbox app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pactmesh_contracts.events import ToolErrorCode
from pactmesh_sandbox.app import create_app as create_sandbox
from pactmesh_sandbox.settings import Settings as SandboxSettings
from pactmesh_sandbox.testing import Recorder, SandboxAdmin, served
from pactmesh_tools.adapters.http import _Pools
from pactmesh_tools.domain.registry import OnBehalf, Outcome, ToolRegistry
from pactmesh_tools.domain.resilience import Backends
from pactmesh_workflows.registry import registry

CALLER = OnBehalf(tenant="acme", principal="user-1")
"""Whom the tests' calls act for."""

MakeTools = Callable[..., Awaitable[tuple[ToolRegistry, Backends]]]

PO = {
    "vendor": "Dell",
    "items": [{"description": "laptop", "quantity": 25, "unit_price": 1200.0}],
    "amount": 30_000.0,
    "currency": "USD",
}
REFUND = {"order_id": "4411", "amount": 129.0, "currency": "USD", "reason": "arrived broken"}


class FakeClock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def call(
    tools: ToolRegistry,
    tool: str,
    arguments: dict[str, Any],
    *,
    key: str = "wf-1:step",
    timeout_s: float = 5.0,
    on_behalf: OnBehalf = CALLER,
) -> Outcome:
    """Invoke ``tool`` as the handler does."""
    return await tools.invoke(
        tool=tool,
        arguments=arguments,
        idempotency_key=key,
        timeout_s=timeout_s,
        on_behalf=on_behalf,
    )


async def ok(tools: ToolRegistry, tool: str, arguments: dict[str, Any], **kw: Any) -> Any:
    """Invoke ``tool``, insist that it succeeded, and return its result."""
    outcome = await call(tools, tool, arguments, **kw)
    assert outcome.ok, (outcome.error_code, outcome.message)
    return outcome.result


async def _booking(tools: ToolRegistry, carrier: str = "oceanic") -> dict[str, Any]:
    quote = await ok(tools, "carriers.quote", {"carrier": carrier, "shipment_id": "SH-77"})
    return {
        "carrier": carrier,
        "shipment_id": "SH-77",
        "quote_id": quote["quote_id"],
        "cost": quote["cost"],
    }


# -- happy paths ----------------------------------------------------------------------


def test_the_registry_offers_every_tool_a_workflow_calls(tools: ToolRegistry) -> None:
    described = {t["name"]: t for t in tools.describe()}
    assert list(described) == sorted(t.name for t in registry().tools)
    assert {
        "kb.search",
        "crm.get_order",
        "procurement.check_policy",
        "erp.create_purchase_order",
        "carriers.quote",
        "carriers.book",
        "payments.refund",
    } <= set(described)
    side_effecting = {name for name, t in described.items() if t["side_effecting"]}
    assert side_effecting == {t.name for t in registry().tools if t.side_effecting}
    assert {"erp.create_purchase_order", "carriers.book", "payments.refund"} <= side_effecting
    assert described["carriers.book"]["arguments"]["additionalProperties"] is False
    assert (
        "quoted cost"
        in described["carriers.book"]["arguments"]["properties"]["cost"]["description"]
    )


async def test_kb_search(tools: ToolRegistry) -> None:
    result = await ok(tools, "kb.search", {"query": "How do I reset my password?", "limit": 2})
    assert result["hits"][0]["id"] == "kb-001"
    assert len(result["hits"]) <= 2


async def test_crm_get_order(tools: ToolRegistry) -> None:
    order = await ok(tools, "crm.get_order", {"order_id": "4411"})
    assert order == {
        "order_id": "4411",
        "status": "shipped",
        "total": 129.0,
        "currency": "USD",
        "items": ["wireless headphones"],
        "customer_id": "C-1001",
    }


async def test_a_call_sees_and_changes_only_its_tenants_data(
    tools: ToolRegistry, admin: SandboxAdmin
) -> None:
    globex = OnBehalf(tenant="globex", principal="gus")
    assert (await call(tools, "crm.get_order", {"order_id": "5005"}, on_behalf=globex)).ok
    stolen = await call(tools, "crm.get_order", {"order_id": "5005"})  # as acme
    assert (stolen.ok, stolen.message) == (False, "crm: not found (404): order 5005 not found")
    refund = {**REFUND, "order_id": "5005", "amount": 10.0}
    paid = await call(tools, "payments.refund", refund, key="wf-9:refund")
    assert (paid.ok, paid.message) == (False, "payments: not found (404): order 5005 not found")
    assert await admin.ledger(idempotency_key="wf-9:refund") == []

    await ok(tools, "payments.refund", REFUND, key="wf-9:refund")
    [entry] = await admin.ledger(idempotency_key="wf-9:refund")
    assert (entry["tenant"], entry["principal"]) == ("acme", "user-1")


async def test_procurement_check_policy_as_the_workflow_calls_it(tools: ToolRegistry) -> None:
    result = await ok(tools, "procurement.check_policy", {"amount": 30_000.0, "text": "laptops"})
    assert result == {
        "within_policy": False,
        "flags": ["amount 30000 exceeds the approval limit 10000"],
        "approval_limit": 10_000.0,
    }
    full = {
        "vendor": "ShadyParts",
        "amount": 5.0,
        "currency": "EUR",
        "items": [{"description": "bolts", "quantity": 100, "unit_price": 0.05}],
    }
    assert (await ok(tools, "procurement.check_policy", full))["flags"] == [
        "vendor shadyparts is blocked"
    ]


async def test_erp_create_purchase_order(tools: ToolRegistry, admin: SandboxAdmin) -> None:
    created = await ok(tools, "erp.create_purchase_order", PO, key="wf-7:raise_po")
    assert created["status"] == "created"
    assert created["amount"] == 30_000.0
    [entry] = await admin.ledger()
    assert (entry["id"], entry["idempotency_key"]) == (created["po_id"], "wf-7:raise_po")


async def test_carriers_quote(tools: ToolRegistry) -> None:
    quotes = [
        await ok(tools, "carriers.quote", {"carrier": carrier, "shipment_id": "SH-77"})
        for carrier in ("northwind", "oceanic", "rapidfreight")
    ]
    assert [q["carrier"] for q in quotes] == ["northwind", "oceanic", "rapidfreight"]
    assert all(set(q) == {"quote_id", "carrier", "cost", "days"} for q in quotes)
    again = await ok(tools, "carriers.quote", {"carrier": "oceanic", "shipment_id": "SH-77"})
    assert again == quotes[1]
    outcome = await call(tools, "carriers.quote", {"carrier": "slowboat", "shipment_id": "SH-77"})
    assert outcome.error_code is ToolErrorCode.INVALID_ARGUMENTS


async def test_carriers_book(tools: ToolRegistry, admin: SandboxAdmin) -> None:
    booked = await ok(tools, "carriers.book", await _booking(tools), key="wf-7:book")
    assert booked["carrier"] == "oceanic"
    assert [e["id"] for e in await admin.ledger(kind="booking")] == [booked["booking_id"]]


async def test_payments_refund(tools: ToolRegistry, admin: SandboxAdmin) -> None:
    refund = await ok(tools, "payments.refund", REFUND, key="wf-7:refund")
    assert refund["amount"] == 129.0
    assert [e["id"] for e in await admin.ledger(kind="refund")] == [refund["refund_id"]]


# -- idempotency ----------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["erp.create_purchase_order", "carriers.book", "payments.refund"])
async def test_a_replayed_call_creates_one_effect(
    tools: ToolRegistry, admin: SandboxAdmin, tool: str
) -> None:
    arguments = {"erp.create_purchase_order": PO, "payments.refund": REFUND}.get(tool)
    arguments = arguments or await _booking(tools)

    first = await ok(tools, tool, arguments, key="wf-1:effect")
    again = await ok(tools, tool, arguments, key="wf-1:effect")

    assert again == first
    assert len(await admin.ledger(idempotency_key="wf-1:effect")) == 1


async def test_the_same_key_with_other_arguments_fails_clearly(
    tools: ToolRegistry, admin: SandboxAdmin
) -> None:
    await ok(tools, "erp.create_purchase_order", PO, key="wf-1:raise")
    outcome = await call(
        tools, "erp.create_purchase_order", {**PO, "amount": 31_000.0}, key="wf-1:raise"
    )
    assert (outcome.ok, outcome.error_code, outcome.retryable) == (
        False,
        ToolErrorCode.BACKEND_ERROR,
        False,
    )
    assert outcome.message == (
        "erp: conflict (409): Idempotency-Key 'wf-1:raise' was already used for a different request"
    )
    assert outcome.attempts == 1
    assert len(await admin.ledger()) == 1


async def test_a_failure_after_commit_is_retried_into_the_same_effect(
    tools: ToolRegistry, admin: SandboxAdmin
) -> None:
    await admin.set_faults("payments", fail_after_commit_next=1)
    outcome = await call(tools, "payments.refund", REFUND, key="wf-2:refund")
    assert outcome.ok, outcome.message
    assert outcome.attempts == 2
    [entry] = await admin.ledger()
    assert entry["id"] == outcome.result["refund_id"]


# -- retries and deadlines ------------------------------------------------------------


async def test_transient_failures_are_retried(
    tools: ToolRegistry, admin: SandboxAdmin, recorder: Recorder
) -> None:
    await admin.set_faults("crm", fail_next=2)
    outcome = await call(tools, "crm.get_order", {"order_id": "4411"})
    assert outcome.ok, outcome.message
    assert outcome.attempts == 3
    assert recorder.requests["crm"] == 3


async def test_retries_stop_at_max_attempts(
    make_tools: MakeTools, admin: SandboxAdmin, recorder: Recorder
) -> None:
    tools, _guards = await make_tools(max_attempts=3)
    await admin.set_faults("erp", error_rate=1.0)
    outcome = await call(tools, "erp.create_purchase_order", PO)
    assert (outcome.error_code, outcome.retryable, outcome.attempts) == (
        ToolErrorCode.BACKEND_ERROR,
        True,
        3,
    )
    assert outcome.message == "erp failed (500): erp: injected error (error_rate)"
    assert recorder.requests["erp"] == 3
    assert await admin.ledger() == []


@pytest.mark.parametrize(
    ("tool", "arguments", "message"),
    [
        ("crm.get_order", {"order_id": "9999"}, "crm: not found (404): order 9999 not found"),
        (
            "payments.refund",
            {**REFUND, "amount": 500.0},
            "payments: refused the request (422): order 4411 can be refunded at most 129 USD",
        ),
    ],
)
async def test_a_4xx_is_not_retried(
    tools: ToolRegistry, recorder: Recorder, tool: str, arguments: dict[str, Any], message: str
) -> None:
    outcome = await call(tools, tool, arguments)
    assert (outcome.error_code, outcome.retryable, outcome.attempts) == (
        ToolErrorCode.BACKEND_ERROR,
        False,
        1,
    )
    assert outcome.message == message
    assert sum(recorder.requests.values()) == 1


async def test_a_hanging_backend_fails_at_the_deadline(
    make_tools: MakeTools, admin: SandboxAdmin
) -> None:
    tools, _guards = await make_tools(attempt_timeout_s=30)
    await admin.set_faults("kb", timeout_rate=1.0)
    started = time.monotonic()
    outcome = await call(tools, "kb.search", {"query": "password"}, timeout_s=0.5)
    elapsed = time.monotonic() - started

    assert (outcome.error_code, outcome.retryable, outcome.attempts) == (
        ToolErrorCode.TIMEOUT,
        True,
        1,
    )
    assert outcome.message == "kb.search did not complete within its 0.5s deadline"
    assert 0.45 <= elapsed < 2.0


async def test_attempts_time_out_and_are_retried_within_the_deadline(
    make_tools: MakeTools, admin: SandboxAdmin
) -> None:
    tools, _guards = await make_tools(attempt_timeout_s=0.1, max_attempts=3)
    await admin.set_faults("kb", timeout_rate=1.0)
    outcome = await call(tools, "kb.search", {"query": "password"}, timeout_s=5)
    assert (outcome.error_code, outcome.retryable, outcome.attempts) == (
        ToolErrorCode.TIMEOUT,
        True,
        3,
    )
    assert outcome.message == "kb did not answer within 0.1s"
    assert outcome.duration_ms < 2_000


async def test_retries_never_outlast_the_deadline(
    make_tools: MakeTools, admin: SandboxAdmin
) -> None:
    tools, _guards = await make_tools(max_attempts=20, backoff_initial_s=0.2, backoff_max_s=0.2)
    await admin.set_faults("crm", error_rate=1.0)
    outcome = await call(tools, "crm.get_order", {"order_id": "4411"}, timeout_s=0.5)
    assert outcome.error_code is ToolErrorCode.BACKEND_ERROR
    assert 2 <= outcome.attempts <= 3
    assert outcome.duration_ms < 1_500


# -- circuit breaker ------------------------------------------------------------------


async def test_the_breaker_opens_fails_fast_and_half_opens(
    make_tools: MakeTools, admin: SandboxAdmin, recorder: Recorder
) -> None:
    clock = FakeClock()
    tools, guards = await make_tools(
        clock=clock, max_attempts=1, breaker_threshold=3, breaker_cooldown_s=30
    )
    await admin.set_faults("crm", error_rate=1.0)
    order = {"order_id": "4411"}
    for _ in range(3):
        assert (await call(tools, "crm.get_order", order)).error_code is ToolErrorCode.BACKEND_ERROR

    refused = await call(tools, "crm.get_order", order)
    assert (refused.error_code, refused.retryable, refused.attempts) == (
        ToolErrorCode.CIRCUIT_OPEN,
        True,
        0,
    )
    assert refused.message == "crm is failing: its circuit breaker is open, retry in 30.0s"
    assert recorder.requests["crm"] == 3
    assert guards["crm"].describe()["state"] == "open"
    assert (await call(tools, "kb.search", {"query": "password"})).ok  # other backends pass

    clock.now += 31
    assert guards["crm"].describe()["state"] == "half_open"
    failed_trial = await call(tools, "crm.get_order", order)
    assert failed_trial.error_code is ToolErrorCode.BACKEND_ERROR
    assert (await call(tools, "crm.get_order", order)).error_code is ToolErrorCode.CIRCUIT_OPEN

    clock.now += 31
    await admin.set_faults("crm")
    assert (await call(tools, "crm.get_order", order)).ok
    assert guards["crm"].describe()["state"] == "closed"
    assert recorder.requests["crm"] == 5


async def test_a_4xx_does_not_open_the_breaker(make_tools: MakeTools) -> None:
    tools, guards = await make_tools(breaker_threshold=2)
    for _ in range(3):
        outcome = await call(tools, "crm.get_order", {"order_id": "9999"})
        assert outcome.error_code is ToolErrorCode.BACKEND_ERROR
    assert guards["crm"].describe()["state"] == "closed"


async def test_each_carrier_has_its_own_breaker(make_tools: MakeTools, admin: SandboxAdmin) -> None:
    tools, guards = await make_tools(max_attempts=1, breaker_threshold=1, breaker_cooldown_s=60)
    await admin.set_faults("carriers.northwind", error_rate=1.0)
    shipment = {"shipment_id": "SH-77"}
    failed = await call(tools, "carriers.quote", {"carrier": "northwind", **shipment})
    assert failed.message == (
        "carriers.northwind failed (500): carriers.northwind: injected error (error_rate)"
    )
    refused = await call(tools, "carriers.quote", {"carrier": "northwind", **shipment})
    assert refused.error_code is ToolErrorCode.CIRCUIT_OPEN
    await ok(tools, "carriers.quote", {"carrier": "oceanic", **shipment})
    states = {b["name"]: b["state"] for b in guards.describe()}
    assert states["carriers.northwind"] == "open"
    assert states["carriers.oceanic"] == "closed"


# -- concurrency ----------------------------------------------------------------------


async def test_the_concurrency_limit_holds_per_backend(
    make_tools: MakeTools, admin: SandboxAdmin, recorder: Recorder
) -> None:
    tools, _guards = await make_tools(backend_overrides={"kb": {"concurrency": 2}})
    await admin.set_faults("kb", latency_ms=50)
    outcomes = await asyncio.gather(
        *(call(tools, "kb.search", {"query": "password"}) for _ in range(8))
    )
    assert all(o.ok and o.attempts == 1 for o in outcomes)
    assert recorder.max_in_flight == 2
    assert recorder.requests["kb"] == 8


# -- dropped connections (real sockets) -----------------------------------------------


async def test_dropped_connections_are_retried_into_one_effect(
    make_tools: MakeTools, tmp_path: Path
) -> None:
    sandbox = create_sandbox(SandboxSettings(data_dir=tmp_path / "served", seed=11))
    async with served(sandbox) as url:
        tools, _guards = await make_tools(base_url=url, max_attempts=10, breaker_threshold=20)
        async with httpx.AsyncClient(base_url=url) as http:
            admin = SandboxAdmin(http)
            await admin.set_faults("erp", drop_rate=0.6)
            outcomes = [await call(tools, "erp.create_purchase_order", PO, key="wf-d:po")]
            outcomes += [await call(tools, "erp.create_purchase_order", PO, key="wf-d:po")]
            assert all(o.ok for o in outcomes), [o.message for o in outcomes]
            assert sum(o.attempts for o in outcomes) > 2  # some attempts were dropped
            assert len(await admin.ledger()) == 1

            await admin.set_faults("erp", drop_rate=1.0)
            dropped = await call(tools, "erp.create_purchase_order", PO, key="wf-d:po2")
            assert (dropped.error_code, dropped.retryable, dropped.attempts) == (
                ToolErrorCode.BACKEND_ERROR,
                True,
                10,
            )
            assert dropped.message == (
                "erp: connection failed: RemoteProtocolError: Server disconnected without"
                " sending a response."
            )


async def test_a_busy_backend_spreads_its_connections_over_several_pools() -> None:
    class Client:
        def __init__(self) -> None:
            self.open = 0
            self.most = 0

        async def request(self, method: str, path: str, **kwargs: Any) -> Any:
            self.open += 1
            self.most = max(self.most, self.open)
            await release.wait()
            self.open -= 1
            return path

    clients = [Client() for _ in range(3)]
    pools = _Pools(clients)  # type: ignore[arg-type]
    release = asyncio.Event()
    calls = [asyncio.ensure_future(pools.request("GET", f"/{n}")) for n in range(3 * 50)]
    await asyncio.sleep(0)
    release.set()
    assert sorted(await asyncio.gather(*calls)) == sorted(f"/{n}" for n in range(150))
    assert [c.most for c in clients] == [50, 50, 50], "each request went to the least busy"
