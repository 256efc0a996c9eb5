"""A tool contract the tools service has never seen is bound and called generically:
the request comes from its endpoint, the answer is checked against its result."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import httpx
import pytest
from fastapi import FastAPI, Header
from pactmesh_contracts.events import ToolErrorCode
from pactmesh_contracts.tools import Endpoint, ToolArguments, ToolContract, ToolOutput
from pactmesh_tools.adapters.http import HttpBackends
from pactmesh_tools.adapters.sandbox import backends, sandbox_tools
from pactmesh_tools.domain.registry import OnBehalf, ToolRegistry
from pactmesh_tools.domain.resilience import Backends
from pactmesh_tools.settings import Settings

CALLER = OnBehalf(tenant="acme", principal="user-1")
"""Whom the tests' calls act for."""


class LookupArgs(ToolArguments):
    region: Literal["eu", "us"]
    account: str
    verbose: bool = False
    since: date | None = None


class Account(ToolOutput):
    account: str
    region: str
    verbose: bool


class ChargeArgs(ToolArguments):
    region: Literal["eu", "us"]
    account: str
    cents: int


class Charge(ToolOutput):
    charge_id: str


LOOKUP = ToolContract(
    "ledger.lookup",
    "Look an account up.",
    LookupArgs,
    Account,
    Endpoint("ledger.{region}", "GET", "/ledger/{region}/accounts/{account}"),
)
CHARGE = ToolContract(
    "ledger.charge",
    "Charge an account.",
    ChargeArgs,
    Charge,
    Endpoint("ledger.{region}", "POST", "/ledger/{region}/charges"),
    side_effecting=True,
)


def _backend() -> FastAPI:
    app = FastAPI()
    seen: list[dict[str, Any]] = []
    app.state.seen = seen

    @app.get("/ledger/{region}/accounts/{account}")
    async def lookup(
        region: str, account: str, verbose: bool, since: date | None = None
    ) -> dict[str, Any]:
        return {"account": account, "region": region, "verbose": verbose}

    @app.post("/ledger/{region}/charges")
    async def charge(
        region: str, body: dict[str, Any], key: str = Header(alias="Idempotency-Key")
    ) -> dict[str, Any]:
        seen.append({"region": region, "body": body, "key": key})
        return (
            {"charge_id": "CH-1", "unexpected": True}
            if body["cents"] > 100
            else {"charge_id": "CH-1"}
        )

    return app


@pytest.fixture
async def registry() -> Any:
    app = _backend()
    settings = Settings()
    http = HttpBackends(
        base_url="http://ledger",
        guards=Backends(settings.backend_limits),
        names=backends([LOOKUP, CHARGE]),
        transport=httpx.ASGITransport(app=app),
    )
    yield ToolRegistry(sandbox_tools(http, [LOOKUP, CHARGE])), app
    await http.aclose()


async def test_a_get_fills_the_path_and_sends_the_rest_as_query(registry: Any) -> None:
    tools, _ = registry
    outcome = await tools.invoke(
        tool="ledger.lookup",
        arguments={"region": "eu", "account": "a 1", "verbose": True},
        idempotency_key="wf:1",
        timeout_s=5,
        on_behalf=CALLER,
    )
    assert outcome.ok, outcome.message
    assert outcome.result == {"account": "a 1", "region": "eu", "verbose": True}


async def test_a_side_effect_posts_the_rest_with_the_idempotency_key(registry: Any) -> None:
    tools, app = registry
    outcome = await tools.invoke(
        tool="ledger.charge",
        arguments={"region": "us", "account": "a-1", "cents": 50},
        idempotency_key="wf:charge",
        timeout_s=5,
        on_behalf=CALLER,
    )
    assert outcome.ok, outcome.message
    assert app.state.seen == [
        {"region": "us", "body": {"account": "a-1", "cents": 50}, "key": "wf:charge"}
    ]


async def test_an_answer_outside_the_result_contract_fails_the_call(registry: Any) -> None:
    tools, _ = registry
    outcome = await tools.invoke(
        tool="ledger.charge",
        arguments={"region": "us", "account": "a-1", "cents": 500},
        idempotency_key="wf:big",
        timeout_s=5,
        on_behalf=CALLER,
    )
    assert (outcome.ok, outcome.error_code) == (False, ToolErrorCode.BACKEND_ERROR)
    assert "answered outside its contract" in outcome.message


def test_each_region_is_a_backend_of_its_own() -> None:
    assert backends([LOOKUP, CHARGE]) == ("ledger.eu", "ledger.us")


async def test_arguments_are_read_as_the_json_they_travel_in(registry: Any) -> None:
    tools, _ = registry
    sent = {"region": "eu", "account": "a-1", "since": "2031-03-02"}
    ok = await tools.invoke(
        tool="ledger.lookup", arguments=sent, idempotency_key="k", timeout_s=5, on_behalf=CALLER
    )
    assert ok.ok, ok.message
    wrong = {**sent, "since": "03/02/2031"}
    refused = await tools.invoke(
        tool="ledger.lookup", arguments=wrong, idempotency_key="k", timeout_s=5, on_behalf=CALLER
    )
    assert refused.error_code is ToolErrorCode.INVALID_ARGUMENTS
    loose = {**sent, "verbose": "yes"}  # strict: a string is no boolean
    refused = await tools.invoke(
        tool="ledger.lookup", arguments=loose, idempotency_key="k", timeout_s=5, on_behalf=CALLER
    )
    assert refused.error_code is ToolErrorCode.INVALID_ARGUMENTS
