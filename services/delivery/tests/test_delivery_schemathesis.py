"""Delivery's webhook API against its own OpenAPI document, with a token of each role
over a real SQLite store: no 5xx, every answer documented (a body that is not JSON
included)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pactmesh_delivery.adapters.sqlite_store import open_sqlite_stores
from pactmesh_delivery.app import create_app
from pactmesh_delivery.runtime import Runtime
from pactmesh_delivery.settings import Settings
from pactmesh_kit.testing_openapi import (
    ROLES,
    call_as,
    conformance_schema,
    conformance_settings,
    without_lifespan,
)

schema = conformance_schema(create_app, Settings)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def delivery_app(settings: Settings) -> Any:
    app = create_app(settings)
    runtime: Runtime = app.state.runtime

    @asynccontextmanager
    async def stores() -> AsyncIterator[None]:
        async with open_sqlite_stores(
            settings.data_dir / "delivery.sqlite3", box=settings.secret_box()
        ) as opened:
            runtime.webhooks = opened[1]
            yield
            runtime.webhooks = None

    return without_lifespan(app, resources=stores)


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@conformance_settings(max_examples=15)
def test_the_webhook_api_answers_as_its_openapi_says(
    case: Any, delivery_app: Any, settings: Settings, role: str
) -> None:
    call_as(case, delivery_app, settings, role)
