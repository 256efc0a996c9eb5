"""schemathesis against intake's OpenAPI document: for every operation, bounded and
derandomized cases (valid and invalid), each answered without a 5xx and exactly as
documented (status, content type, body schema, headers).

In process, against the ASGI app with a real SQLite store and the access policy, and a
publisher that encodes each event as Kafka would carry it but sends nothing: what is
checked here is the HTTP contract, which does not depend on the broker; the mesh runs
the same routes against real Kafka in tests-integration. Cases carry a requester's
token with every workflow scope, so they get past authentication to the routes'
validation and logic (the 401/403 paths have tests of their own).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from pactmesh_contracts.envelope import Envelope
from pactmesh_intake.adapters.audit_store import open_audit_store
from pactmesh_intake.adapters.sqlite_store import open_sqlite_store
from pactmesh_intake.app import create_app
from pactmesh_intake.runtime import Runtime
from pactmesh_intake.settings import Settings
from pactmesh_kit.auth.testing import bearer
from pactmesh_kit.kafka import encode
from pactmesh_kit.testing_openapi import (
    CONFORMANCE_CHECKS,
    conformance_settings,
    openapi_document,
    without_lifespan,
)
from pactmesh_workflows.registry import registry

SCOPES = tuple(f"workflow:{w}" for w in registry())


class EncodingPublisher:
    """Encodes every event as the real publisher would (so an event Kafka could not
    carry fails here too), and keeps them."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def publish(self, event: Envelope[Any]) -> None:
        self.sent.append(encode(event))

    async def publish_all(self, events: list[Envelope[Any]]) -> None:
        for event in events:
            await self.publish(event)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, max_body_bytes=16 * 1024)


@pytest.fixture
def token(settings: Settings) -> dict[str, str]:
    return bearer(settings, tenant="acme", roles=("requester",), scopes=SCOPES)


# /health/ready reports whether Kafka answers: with no broker here its 503 is the right
# answer, and the integration tests check it against a running one.
schema = schemathesis.openapi.from_dict(openapi_document(create_app, Settings)).exclude(
    path="/health/ready"
)


@pytest.fixture
def intake_app(settings: Settings) -> Any:
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    runtime.publisher = EncodingPublisher()  # type: ignore[assignment]
    runtime.auditor = EncodingPublisher()

    @asynccontextmanager
    async def store() -> AsyncIterator[None]:
        async with (
            open_sqlite_store(settings.data_dir / "intake.sqlite3") as opened,
            open_audit_store(data_dir=settings.data_dir, postgres_url=None) as audit,
        ):
            runtime.store, runtime.audit = opened, audit
            yield
            runtime.store, runtime.audit = None, None

    return without_lifespan(app, resources=store)


@schema.parametrize()
@conformance_settings(max_examples=30)
def test_intake_answers_as_its_openapi_says(
    case: Any, intake_app: Any, token: dict[str, str]
) -> None:
    case.call_and_validate(app=intake_app, headers=token, checks=CONFORMANCE_CHECKS)
