"""Holding a service's app to its OpenAPI document with schemathesis, in process.

For tests only (schemathesis is a development dependency of the workspace). A service
test loads its app's document, builds the app per test with its lifespan (which would
start Kafka) replaced by the resources the routes need, and runs every operation
through schemathesis's checks::

    schema = schemathesis.openapi.from_dict(openapi_document(create_app, Settings))

    @pytest.fixture
    def app(tmp_path):
        return without_lifespan(create_app(Settings(data_dir=tmp_path)), resources=...)

    @schema.parametrize()
    @conformance_settings()
    def test_conformance(case, app):
        case.call_and_validate(app=app, headers=token, checks=CONFORMANCE_CHECKS)

(``schemathesis.pytest.from_fixture`` would load the schema from the fixture instead,
but schemathesis 4.32's lazy loader relies on a pytest attribute that pytest 9.2 no
longer has.)
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from pactmesh_kit.settings import KitSettings

CONFORMANCE_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
"""No 5xx, and every response documented: its status, content type, body and headers."""

ROLES = ("requester", "auditor", "operator", "integrator", "reviewer", "upstream-system")
"""One token of each kind of caller: a service's document holds for every one of them
(what a role may not do is a documented 403 or 404, never a 5xx)."""

Resources = Callable[[], AbstractAsyncContextManager[Any]]


def without_lifespan(app: ASGIApp, *, resources: Resources | None = None) -> ASGIApp:
    """``app`` with its lifespan replaced by ``resources`` (entered at startup, exited
    at shutdown): services start their Kafka consumers in the lifespan, which an
    HTTP-conformance test neither has nor needs.

    Hand-written because this is the ASGI lifespan protocol itself (three messages),
    which is smaller than any wrapper library's configuration.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        async with AsyncExitStack() as stack:
            await receive()  # lifespan.startup
            try:
                if resources is not None:
                    await stack.enter_async_context(resources())
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})

    return wrapped


def openapi_document(
    create_app: Callable[[Any], FastAPI], settings: Callable[..., KitSettings]
) -> dict[str, Any]:
    """The OpenAPI document of the app ``create_app`` builds, from a throwaway instance
    (its data directory, where the development issuer's key goes, is removed again)."""
    with tempfile.TemporaryDirectory() as tmp:
        return create_app(settings(data_dir=Path(tmp))).openapi()


def conformance_schema(
    create_app: Callable[[Any], FastAPI], settings: Callable[..., KitSettings]
) -> Any:
    """The schemathesis schema of the app's document, without ``/health/ready`` (which
    answers 503 by design when Kafka is unreachable, as it is in these tests)."""
    import schemathesis

    document = openapi_document(create_app, settings)
    return schemathesis.openapi.from_dict(document).exclude(path="/health/ready")


def call_as(case: Any, app: Any, settings: KitSettings, role: str, tenant: str = "acme") -> None:
    """Run a schemathesis ``case`` against ``app`` as a ``role`` of ``tenant``, with the
    conformance checks."""
    from pactmesh_kit.auth.testing import bearer

    headers = bearer(settings, tenant=tenant, roles=(role,))
    case.call_and_validate(app=app, headers=headers, checks=CONFORMANCE_CHECKS)


def conformance_settings(max_examples: int = 30) -> Any:
    """Hypothesis settings for a bounded, repeatable run inside ``make test``: at most
    ``max_examples`` cases per operation, derandomized (the same cases every run), no
    example database, no per-example deadline (a shared CI machine is slow at times)."""
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        # The app fixture is built once per operation, not per example, on purpose.
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )
