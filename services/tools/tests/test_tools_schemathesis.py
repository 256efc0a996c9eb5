"""The tools service's API (the registry, the backends' breakers) against its own
OpenAPI document, with a token of each role: no 5xx, every answer documented (an
operator reads both; everyone else is refused, as documented)."""

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
from pactmesh_tools.app import create_app
from pactmesh_tools.settings import Settings

schema = conformance_schema(create_app, Settings)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def tools_app(settings: Settings) -> Any:
    # Listing tools and breakers calls no backend: the app's own clients stay unused.
    return without_lifespan(create_app(settings))


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@conformance_settings(max_examples=10)
def test_the_tools_api_answers_as_its_openapi_says(
    case: Any, tools_app: Any, settings: Settings, role: str
) -> None:
    call_as(case, tools_app, settings, role)
