"""Fixtures: the sandbox in-process, the tools registry calling it over HTTP, and the
tools service's handler and dispatcher on FastStream's in-memory broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pactmesh_sandbox.app import create_app as create_sandbox
from pactmesh_sandbox.settings import Settings as SandboxSettings
from pactmesh_sandbox.testing import Recorder, SandboxAdmin
from pactmesh_tools.adapters.http import HttpBackends
from pactmesh_tools.adapters.sandbox import BACKENDS, sandbox_tools
from pactmesh_tools.domain.registry import ToolRegistry
from pactmesh_tools.domain.resilience import Backends
from pactmesh_tools.settings import Settings
from pactmesh_tools.testing import RunTools, running_tools

FAST = {
    "attempt_timeout_s": 2.0,
    "backoff_initial_s": 0.01,
    "backoff_max_s": 0.05,
    "backoff_jitter_s": 0.01,
}
"""Retry settings that keep tests quick."""

MakeTools = Callable[..., Awaitable[tuple[ToolRegistry, Backends]]]


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[FastAPI]:
    app = create_sandbox(SandboxSettings(data_dir=tmp_path / "sandbox", seed=3, hang_s=30))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def recorder(sandbox: FastAPI) -> Recorder:
    return Recorder(sandbox)


@pytest.fixture
async def admin(sandbox: FastAPI) -> AsyncIterator[SandboxAdmin]:
    transport = httpx.ASGITransport(app=sandbox)
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as http:
        yield SandboxAdmin(http)


@pytest.fixture
async def make_tools(recorder: Recorder) -> AsyncIterator[MakeTools]:
    """Build a registry (and its backends' guards) over the in-process sandbox, or the
    one at ``base_url``, with settings ``FAST`` plus the given overrides; ``clock``
    drives the circuit breakers."""
    made: list[HttpBackends] = []

    async def make(
        *, base_url: str | None = None, clock: Callable[[], float] | None = None, **overrides: Any
    ) -> tuple[ToolRegistry, Backends]:
        settings = Settings(**{**FAST, **overrides})
        guards = Backends(settings.backend_limits, **({"clock": clock} if clock else {}))
        http = HttpBackends(
            base_url=base_url or "http://sandbox",
            guards=guards,
            names=BACKENDS,
            transport=None if base_url else httpx.ASGITransport(app=recorder),
        )
        made.append(http)
        return ToolRegistry(sandbox_tools(http), policy=settings.tool_policy), guards

    yield make
    for http in made:
        await http.aclose()


@pytest.fixture
async def tools(make_tools: MakeTools) -> ToolRegistry:
    registry, _ = await make_tools()
    return registry


@pytest.fixture
def run_tools(tmp_path: Path) -> RunTools:
    """Start the tools service's handler and dispatcher over a registry, on the
    in-memory broker, with the inbox in ``tmp_path`` (see ``running_tools``)."""
    settings = Settings(topic_prefix="tools-test.", data_dir=tmp_path)
    return partial(running_tools, settings=settings)
