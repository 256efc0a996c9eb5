"""Routing's HTTP surface (health, AsyncAPI, OpenAPI) against its own OpenAPI document,
with a token of each role: no 5xx, every answer documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from pactmesh_kit.auth.testing import bearer
from pactmesh_kit.testing_openapi import (
    CONFORMANCE_CHECKS,
    ROLES,
    conformance_settings,
    openapi_document,
    without_lifespan,
)
from pactmesh_routing.app import create_app
from pactmesh_routing.settings import Settings

# /health/ready answers 503 by design when Kafka is unreachable, as it is here.
schema = schemathesis.openapi.from_dict(openapi_document(create_app, Settings)).exclude(
    path="/health/ready"
)


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
    headers = bearer(settings, tenant="acme", roles=(role,))
    case.call_and_validate(app=routing_app, headers=headers, checks=CONFORMANCE_CHECKS)
