"""The hitl service's app factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial

from fastapi import FastAPI
from pactmesh_contracts.topics import REVIEWS_DECIDED
from pactmesh_kit.app import Service

from pactmesh_hitl import handlers
from pactmesh_hitl.adapters.sqlite_store import open_store
from pactmesh_hitl.api.routes import reviewer_page, reviews
from pactmesh_hitl.domain.decisions import expire_due
from pactmesh_hitl.runtime import Runtime
from pactmesh_hitl.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the hitl service: the review queue, the reviewer API, the expiry sweeper."""
    settings = settings or Settings()
    service = Service(
        settings,
        title="pactmesh hitl",
        description="Stores reviews, serves the reviewer API and expires overdue reviews.",
    )
    runtime = Runtime(settings=settings, publisher=service.kafka.publisher(REVIEWS_DECIDED))
    handlers.register(service.kafka, runtime)
    app = service.app(
        runtime,
        routers=[reviews.router],
        public=[reviewer_page.router],
        resources=[partial(_store, runtime), partial(_sweeping, runtime)],
    )
    reviewer_page.mount_static(app)
    return app


@asynccontextmanager
async def _store(runtime: Runtime) -> AsyncIterator[None]:
    async with open_store(runtime.settings.data_dir / "hitl.sqlite3") as store:
        runtime.store = store
        try:
            yield
        finally:
            runtime.store = None


@asynccontextmanager
async def _sweeping(runtime: Runtime) -> AsyncIterator[None]:
    """The expiry sweeper, as a task while the app runs."""
    sweeper = asyncio.create_task(_sweep(runtime), name="review-expiry")
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper


async def _sweep(runtime: Runtime) -> None:
    """Expire overdue reviews every ``expiry_check_s``, for as long as it runs."""
    while True:
        await asyncio.sleep(runtime.settings.expiry_check_s)
        try:
            expired = await expire_due(
                store=runtime.require_store(), publisher=runtime.publisher, now=datetime.now(UTC)
            )
            if expired:
                logger.info("expired %d review(s)", expired)
        except Exception:
            logger.exception("expiry sweep failed; retrying next round")
