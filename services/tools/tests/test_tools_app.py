"""The tools service's HTTP API and settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pactmesh_kit.auth.testing import bearer
from pactmesh_tools.app import create_app
from pactmesh_tools.domain.registry import ToolPolicy
from pactmesh_tools.domain.resilience import BackendLimits
from pactmesh_tools.settings import Settings
from pactmesh_workflows.registry import registry


@pytest.fixture
async def anonymous(tmp_path: Path, sandbox: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The tools service's API, called without a token."""
    settings = Settings(data_dir=tmp_path, breaker_threshold=1, max_attempts=1)
    app = create_app(settings, sandbox_transport=httpx.ASGITransport(app=sandbox))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tools") as client:
        yield client


@pytest.fixture
def api(anonymous: httpx.AsyncClient, tmp_path: Path) -> httpx.AsyncClient:
    """The tools service's API, called by an operator."""
    anonymous.headers.update(bearer(Settings(data_dir=tmp_path), roles=("operator",)))
    return anonymous


@pytest.mark.parametrize("path", ["/v1/tools", "/v1/tools/backends"])
async def test_the_registry_and_backends_are_for_operators_only(
    anonymous: httpx.AsyncClient, tmp_path: Path, path: str
) -> None:
    assert (await anonymous.get(path)).status_code == 401
    requester = bearer(Settings(data_dir=tmp_path), roles=("requester",))
    denied = await anonymous.get(path, headers=requester)
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]


async def test_the_registry_lists_every_tool_with_its_schemas(api: httpx.AsyncClient) -> None:
    tools = (await api.get("/v1/tools")).json()
    assert len(tools) == len(registry().tools) >= 7
    book = next(t for t in tools if t["name"] == "carriers.book")
    assert book["side_effecting"] is True
    assert book["arguments"]["properties"]["carrier"]["enum"] == [
        "northwind",
        "oceanic",
        "rapidfreight",
    ]


async def test_backends_show_each_breaker(api: httpx.AsyncClient) -> None:
    backends = (await api.get("/v1/tools/backends")).json()
    names = [b["name"] for b in backends]
    assert names == sorted({b for t in registry().tools for b in t.backends})
    assert {
        "kb",
        "crm",
        "procurement",
        "erp",
        "carriers.northwind",
        "carriers.oceanic",
        "carriers.rapidfreight",
        "payments",
    } <= set(names)
    assert {b["state"] for b in backends} == {"closed"}
    assert backends[0]["concurrency_limit"] == 16


def test_settings_defaults_and_per_tool_and_backend_overrides(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PACTMESH_TOOLS_SANDBOX_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("PACTMESH_TOOLS_MAX_ATTEMPTS", "6")
    monkeypatch.setenv(
        "PACTMESH_TOOLS_TOOL_OVERRIDES", '{"erp.create_purchase_order": {"attempt_timeout_s": 15}}'
    )
    monkeypatch.setenv(
        "PACTMESH_TOOLS_BACKEND_OVERRIDES", '{"carriers.oceanic": {"concurrency": 2}}'
    )
    settings = Settings()

    assert settings.sandbox_url == "http://127.0.0.1:9999"
    assert settings.tool_policy("kb.search") == ToolPolicy(max_attempts=6)
    assert settings.tool_policy("erp.create_purchase_order") == ToolPolicy(
        attempt_timeout_s=15, max_attempts=6
    )
    assert settings.backend_limits("carriers.oceanic") == BackendLimits(
        concurrency=2, breaker_threshold=5, breaker_cooldown_s=10.0
    )


def test_unknown_override_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        Settings(tool_overrides={"kb.search": {"retries": 3}})
