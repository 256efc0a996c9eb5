"""Intake's app factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from fastapi import APIRouter, FastAPI
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.topics import AUDIT, REQUESTS_ACCEPTED
from pactmesh_kit.app import Service
from pactmesh_kit.stores import instance_lock
from pactmesh_kit.stores.outbox import Publisher, Relay
from pactmesh_kit.stores.retention import pruning

from pactmesh_intake import handlers
from pactmesh_intake.adapters.audit_store import open_audit_store
from pactmesh_intake.adapters.store import open_store
from pactmesh_intake.api.routes import requests, timeline
from pactmesh_intake.domain.retention import prune
from pactmesh_intake.runtime import Runtime
from pactmesh_intake.settings import Settings

logger = logging.getLogger(__name__)


class LosingAcks:
    """The test hook ``Settings.test_lost_acks``: the first ``count`` events are
    published, then their acknowledgement is reported lost: a ``TimeoutError`` after the
    broker wrote the event, so its outcome looks unknown to intake."""

    def __init__(self, publisher: Publisher, count: int) -> None:
        self._publisher = publisher
        self._left = count

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish ``event``; raise as if its acknowledgement timed out while any are left."""
        await self._publisher.publish(event)
        if self._left > 0:
            self._left -= 1
            logger.warning("test hook: reporting the ack of %s lost", event.event_id)
            raise TimeoutError(f"test hook: the ack of {event.event_id} is lost")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build intake: HTTP submission and status, plus the inbound-topic consumer."""
    settings = settings or Settings()
    service = Service(
        settings,
        title="pactmesh intake",
        description="Submit requests to the mesh and follow their status.",
    )
    accepted: Publisher = service.kafka.publisher(REQUESTS_ACCEPTED)
    if settings.test_lost_acks:
        accepted = LosingAcks(accepted, settings.test_lost_acks)
    relay = Relay.configured(
        accepted,
        topic=REQUESTS_ACCEPTED,
        settings=settings,
        ready=lambda: service.kafka.broker.running,
    )
    runtime = Runtime(settings=settings, publisher=relay, auditor=service.kafka.publisher(AUDIT))
    handlers.register(service.kafka, runtime)
    return service.app(
        runtime,
        routers=[_body_limited(settings), timeline.router],
        resources=[
            partial(instance_lock, settings),
            partial(_limiters, runtime),
            partial(_store, runtime),
            partial(_audit, runtime),
        ],
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
async def _limiters(runtime: Runtime) -> AsyncIterator[None]:
    """The rate limiters' connections to a shared storage, closed when the app stops."""
    try:
        yield
    finally:
        await runtime.submit_limiter.aclose()
        await runtime.read_limiter.aclose()


@asynccontextmanager
async def _audit(runtime: Runtime) -> AsyncIterator[None]:
    """The audit store, and its retention."""
    settings = runtime.settings
    async with open_audit_store(
        data_dir=settings.data_dir, postgres_url=settings.postgres
    ) as store:
        days = settings.audit_retention_days

        async def retention() -> dict[str, int]:
            return {"audit events": await store.prune(datetime.now(UTC) - timedelta(days=days))}

        async with pruning("intake audit", retention, interval_s=settings.retention_interval_s):
            runtime.audit = store
            try:
                yield
            finally:
                runtime.audit = None


@asynccontextmanager
async def _store(runtime: Runtime) -> AsyncIterator[None]:
    """The store, its outbox relay and its retention, for as long as the app runs."""
    settings = runtime.settings
    async with (
        open_store(settings) as store,
        runtime.publisher.running(store.outbox),
        pruning(
            "intake", partial(prune, store, settings), interval_s=settings.retention_interval_s
        ),
    ):
        runtime.store = store
        try:
            yield
        finally:
            runtime.store = None
