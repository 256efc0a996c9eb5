"""Routing's HTTP surface (health, AsyncAPI, OpenAPI) against its own OpenAPI document,
with a token of each role: no 5xx, every answer documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pactmesh_kit.testing_openapi import (
    ROLES,
    call_as,
    conformance_schema,
    conformance_settings,
    without_lifespan,
)
from pactmesh_routing.app import create_app
from pactmesh_routing.settings import Settings

schema = conformance_schema(create_app, Settings)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def routing_app(settings: Settings) -> Any:
    return without_lifespan(create_app(settings))


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@conformance_settings(max_examples=10)
def test_routing_answers_as_its_openapi_says(
    case: Any, routing_app: Any, settings: Settings, role: str
) -> None:
    call_as(case, routing_app, settings, role)
