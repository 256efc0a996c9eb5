"""Intake's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import APIRouter, FastAPI
from pactmesh_contracts.topics import AUDIT, REQUESTS_ACCEPTED
from pactmesh_kit.app import Service

from pactmesh_intake import handlers
from pactmesh_intake.adapters.sqlite_store import open_store
from pactmesh_intake.api.routes import requests
from pactmesh_intake.runtime import Runtime
from pactmesh_intake.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build intake: HTTP submission and status, plus the inbound-topic consumer."""
    settings = settings or Settings()
    service = Service(
        settings,
        title="pactmesh intake",
        description="Submit requests to the mesh and follow their status.",
    )
    runtime = Runtime(
        settings=settings, publisher=service.kafka.publisher(REQUESTS_ACCEPTED, AUDIT)
    )
    handlers.register(service.kafka, runtime)
    return service.app(
        runtime, routers=[_body_limited(settings)], resources=[partial(_store, runtime)]
    )


def _body_limited(settings: Settings) -> APIRouter:
    """The request routes under FastAPI's own body limit (Starlette's
    RequestBodyLimitMiddleware, per route): a declared Content-Length over the limit is
    refused before a byte is read, and a chunked body is counted as it streams in and
    cut off at the limit. Only these routes: health and documentation are unaffected."""
    limited = APIRouter(max_body_size=settings.max_body_bytes)
    limited.include_router(requests.router)
    return limited


@asynccontextmanager
async def _store(runtime: Runtime) -> AsyncIterator[None]:
    async with open_store(runtime.settings.data_dir / "intake.sqlite3") as store:
        runtime.store = store
        try:
            yield
        finally:
            runtime.store = None
