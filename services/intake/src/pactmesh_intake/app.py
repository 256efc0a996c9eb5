"""Intake's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pactmesh_contracts.topics import REQUESTS_ACCEPTED
from pactmesh_kit.kafka import Kafka
from pactmesh_kit.service import create_service_app
from pactmesh_kit.telemetry import setup_telemetry

from pactmesh_intake import handlers
from pactmesh_intake.adapters.sqlite_store import open_store
from pactmesh_intake.api.routes import requests
from pactmesh_intake.runtime import Runtime
from pactmesh_intake.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build intake: HTTP submission and status, plus the inbound-topic consumer."""
    settings = settings or Settings()
    tracer_provider = setup_telemetry(settings)
    kafka = Kafka(settings, tracer_provider=tracer_provider)
    runtime = Runtime(settings=settings, publisher=kafka.publisher(REQUESTS_ACCEPTED))
    handlers.register(kafka, runtime)

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        async with open_store(settings.data_dir / "intake.sqlite3") as store:
            runtime.store = store
            yield
            runtime.store = None

    app = create_service_app(
        settings=settings,
        broker=kafka.broker,
        tracer_provider=tracer_provider,
        title="pactmesh intake",
        description="Submit requests to the mesh and follow their status.",
        resources=resources,
    )
    # FastAPI's own body limit (Starlette's RequestBodyLimitMiddleware, per route): a
    # declared Content-Length over the limit is refused before a byte is read, and a
    # chunked body is counted as it streams in and cut off at the limit. Kept on this
    # router so health and documentation routes are unaffected.
    app.include_router(requests.router, max_body_size=settings.max_body_bytes)
    app.state.runtime = runtime
    return app
