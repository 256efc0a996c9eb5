"""The sandbox in-process (``httpx.ASGITransport``) on a fresh SQLite file per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from pactmesh_sandbox.api.deps import PRINCIPAL_HEADER, TENANT_HEADER
from pactmesh_sandbox.app import create_app
from pactmesh_sandbox.settings import Settings
from pactmesh_sandbox.testing import SandboxAdmin


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, seed=7, hang_s=5.0)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    sandbox = create_app(settings)
    async with sandbox.router.lifespan_context(sandbox):
        yield sandbox


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client acting for tenant acme, as the tools service would."""
    transport = httpx.ASGITransport(app=app)
    headers = {TENANT_HEADER: "acme", PRINCIPAL_HEADER: "user-1"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sandbox", headers=headers
    ) as http:
        yield http


@pytest.fixture
def admin(client: httpx.AsyncClient) -> SandboxAdmin:
    return SandboxAdmin(client)
