"""The sandbox backends, through the registry the service runs them with."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from pactmesh_contracts.events import ToolErrorCode
from pactmesh_tools.adapters.sandbox import APPROVAL_LIMIT, CARRIERS, sandbox_tools
from pactmesh_tools.domain.registry import Outcome, ToolRegistry


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    return ToolRegistry(sandbox_tools())


async def _ok(registry: ToolRegistry, tool: str, **arguments: Any) -> dict[str, Any]:
    outcome = await registry.invoke(tool=tool, arguments=arguments, timeout_s=1)
    assert outcome.ok, outcome.message
    return outcome.result


async def _fails(registry: ToolRegistry, tool: str, **arguments: Any) -> Outcome:
    outcome = await registry.invoke(tool=tool, arguments=arguments, timeout_s=1)
    assert not outcome.ok
    return outcome


def test_the_sandbox_offers_every_tool_the_workflows_call(registry: ToolRegistry) -> None:
    assert [t["name"] for t in registry.describe()] == [
        "kb.search",
        "crm.get_order",
        "procurement.check_policy",
        "carriers.quote",
    ]


async def test_kb_search_ranks_the_password_article_first(registry: ToolRegistry) -> None:
    result = await _ok(registry, "kb.search", query="How do I reset my password?")
    hits = result["hits"]
    assert hits[0]["id"] == "kb-001"
    assert hits[0]["score"] == 1.0
    assert all(a["score"] >= b["score"] for a, b in pairwise(hits))


async def test_kb_search_honours_the_limit_and_may_find_nothing(registry: ToolRegistry) -> None:
    assert len((await _ok(registry, "kb.search", query="order billing plan", limit=1))["hits"]) == 1
    assert (await _ok(registry, "kb.search", query="xylophone quantum"))["hits"] == []


async def test_crm_finds_a_known_order(registry: ToolRegistry) -> None:
    order = await _ok(registry, "crm.get_order", order_id="4411")
    assert order == {
        "order_id": "4411",
        "status": "shipped",
        "total": 129.0,
        "items": ["wireless headphones"],
    }


async def test_crm_unknown_order_is_a_permanent_backend_error(registry: ToolRegistry) -> None:
    outcome = await _fails(registry, "crm.get_order", order_id="9999")
    assert outcome.error_code is ToolErrorCode.BACKEND_ERROR
    assert outcome.retryable is False
    assert outcome.message == "order 9999 not found"


async def test_crm_refuses_a_malformed_order_id(registry: ToolRegistry) -> None:
    outcome = await _fails(registry, "crm.get_order", order_id="")
    assert outcome.error_code is ToolErrorCode.INVALID_ARGUMENTS


@pytest.mark.parametrize(
    ("arguments", "flags"),
    [
        ({"amount": 2_500.0, "text": "laptops from Dell"}, []),
        ({"amount": APPROVAL_LIMIT, "text": ""}, []),
        ({"amount": 30_000.0, "text": ""}, ["amount 30000 exceeds the approval limit 10000"]),
        ({"amount": 500.0, "text": "bolts from ShadyParts Ltd"}, ["vendor shadyparts is blocked"]),
        ({"text": "chairs"}, ["no amount stated"]),
        (
            {"amount": 12_000.5, "text": "shadyparts"},
            ["amount 12000.5 exceeds the approval limit 10000", "vendor shadyparts is blocked"],
        ),
    ],
)
async def test_procurement_flags_what_breaks_policy(
    registry: ToolRegistry, arguments: dict[str, Any], flags: list[str]
) -> None:
    result = await _ok(registry, "procurement.check_policy", **arguments)
    assert result == {"within_policy": not flags, "flags": flags, "approval_limit": APPROVAL_LIMIT}


async def test_procurement_refuses_a_negative_amount(registry: ToolRegistry) -> None:
    outcome = await _fails(registry, "procurement.check_policy", amount=-1)
    assert outcome.error_code is ToolErrorCode.INVALID_ARGUMENTS


async def test_carrier_quotes_are_deterministic_per_shipment(registry: ToolRegistry) -> None:
    first = await _ok(registry, "carriers.quote", shipment_id="SH-77")
    again = await _ok(registry, "carriers.quote", shipment_id="SH-77")
    other = await _ok(registry, "carriers.quote", shipment_id="SH-78")

    assert first == again
    assert first["shipment_id"] == "SH-77"
    assert [q["carrier"] for q in first["quotes"]] == list(CARRIERS)
    assert all(800 <= q["cost"] <= 800 + 255 * 10 and 2 <= q["days"] <= 7 for q in first["quotes"])
    assert first["quotes"] != other["quotes"]
