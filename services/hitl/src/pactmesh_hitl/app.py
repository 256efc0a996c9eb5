"""The hitl service's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, FastAPI, Query
from pactmesh_kit.broker import make_broker
from pactmesh_kit.service import create_service_app
from pactmesh_kit.telemetry import setup_telemetry

from pactmesh_hitl import handlers
from pactmesh_hitl.adapters.sqlite_store import open_store
from pactmesh_hitl.domain.reviews import Review
from pactmesh_hitl.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the hitl service: the review queue and its API."""
    settings = settings or Settings()
    tracer_provider = setup_telemetry(settings)
    broker = make_broker(settings, tracer_provider=tracer_provider)
    runtime = handlers.Runtime(settings=settings)
    handlers.register(broker, runtime)

    api = APIRouter(prefix="/v1/reviews", tags=["reviews"])

    @api.get("")
    async def list_pending(
        tenant: str | None = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[Review]:
        """Pending reviews, oldest first."""
        return await runtime.require_store().pending(tenant=tenant, limit=limit, offset=offset)

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        async with open_store(settings.data_dir / "hitl.sqlite3") as store:
            runtime.store = store
            yield
            runtime.store = None

    return create_service_app(
        settings=settings,
        broker=broker,
        tracer_provider=tracer_provider,
        title="pactmesh hitl",
        description="Stores reviews and serves the reviewer API.",
        resources=resources,
        routers=(api,),
    )
