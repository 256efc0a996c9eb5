"""The hitl service's app factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from pactmesh_contracts.topics import REVIEWS_DECIDED
from pactmesh_kit.kafka import Kafka
from pactmesh_kit.service import create_service_app
from pactmesh_kit.telemetry import setup_telemetry

from pactmesh_hitl import api, handlers
from pactmesh_hitl.adapters.sqlite_store import open_store
from pactmesh_hitl.domain.decisions import expire_due
from pactmesh_hitl.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the hitl service: the review queue, the reviewer API, the expiry sweeper."""
    settings = settings or Settings()
    tracer_provider = setup_telemetry(settings)
    kafka = Kafka(settings, tracer_provider=tracer_provider)
    runtime = handlers.Runtime(settings=settings, publisher=kafka.publisher(REVIEWS_DECIDED))
    handlers.register(kafka, runtime)

    async def sweep() -> None:
        while True:
            await asyncio.sleep(settings.expiry_check_s)
            try:
                expired = await expire_due(
                    store=runtime.require_store(),
                    publisher=runtime.publisher,
                    now=datetime.now(UTC),
                )
                if expired:
                    logger.info("expired %d review(s)", expired)
            except Exception:
                logger.exception("expiry sweep failed; retrying next round")

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        async with open_store(settings.data_dir / "hitl.sqlite3") as store:
            runtime.store = store
            sweeper = asyncio.create_task(sweep(), name="review-expiry")
            try:
                yield
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
                runtime.store = None

    app = create_service_app(
        settings=settings,
        broker=kafka.broker,
        tracer_provider=tracer_provider,
        title="pactmesh hitl",
        description="Stores reviews, serves the reviewer API and expires overdue reviews.",
        resources=resources,
        routers=(api.router,),
    )
    app.state.runtime = runtime
    api.mount_reviewer_page(app)
    return app
