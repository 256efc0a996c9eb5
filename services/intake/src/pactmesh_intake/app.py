"""Intake's app factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial

from fastapi import APIRouter, FastAPI
from pactmesh_contracts.topics import AUDIT, REQUESTS_ACCEPTED
from pactmesh_kit.app import Service

from pactmesh_intake import handlers
from pactmesh_intake.adapters.audit_store import open_audit_store
from pactmesh_intake.adapters.sqlite_store import open_store
from pactmesh_intake.api.routes import requests, timeline
from pactmesh_intake.domain.timeline import AuditStore
from pactmesh_intake.runtime import Runtime
from pactmesh_intake.settings import Settings

logger = logging.getLogger(__name__)

PRUNE_INTERVAL_S = 3600.0


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build intake: HTTP submission and status, plus the inbound-topic consumer."""
    settings = settings or Settings()
    service = Service(
        settings,
        title="pactmesh intake",
        description="Submit requests to the mesh and follow their status.",
    )
    publisher = service.kafka.publisher(REQUESTS_ACCEPTED, AUDIT)
    runtime = Runtime(settings=settings, publisher=publisher)
    handlers.register(service.kafka, runtime)
    return service.app(
        runtime,
        routers=[_body_limited(settings), timeline.router],
        resources=[partial(_store, runtime), partial(_audit, runtime)],
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
async def _audit(runtime: Runtime) -> AsyncIterator[None]:
    """The audit store, and the task pruning it past its retention."""
    settings = runtime.settings
    url = settings.postgres_url.get_secret_value() if settings.postgres_url else None
    async with open_audit_store(data_dir=settings.data_dir, postgres_url=url) as store:
        runtime.audit = store
        pruning = asyncio.create_task(_prune(store, settings.audit_retention_days))
        try:
            yield
        finally:
            pruning.cancel()
            await asyncio.gather(pruning, return_exceptions=True)
            runtime.audit = None


async def _prune(store: AuditStore, days: int) -> None:
    while True:
        try:
            pruned = await store.prune(datetime.now(UTC) - timedelta(days=days))
            if pruned:
                logger.info("audit retention: %d event(s) older than %d days pruned", pruned, days)
        except Exception:
            logger.exception("audit retention round failed; trying again later")
        await asyncio.sleep(PRUNE_INTERVAL_S)


@asynccontextmanager
async def _store(runtime: Runtime) -> AsyncIterator[None]:
    async with open_store(runtime.settings.data_dir / "intake.sqlite3") as store:
        runtime.store = store
        try:
            yield
        finally:
            runtime.store = None
