"""The hitl service's app factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

from fastapi import FastAPI
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import ReviewPriority
from pactmesh_contracts.topics import REVIEWS_DECIDED
from pactmesh_kit.app import Service
from pactmesh_kit.stores import instance_lock
from pactmesh_kit.stores.outbox import Publisher, Relay
from pactmesh_kit.stores.retention import pruning

from pactmesh_hitl import handlers
from pactmesh_hitl.adapters.store import open_store
from pactmesh_hitl.adapters.timeline import TimelineClient
from pactmesh_hitl.api.routes import reviewer_page, reviews
from pactmesh_hitl.domain.decisions import expire_due
from pactmesh_hitl.domain.retention import prune
from pactmesh_hitl.runtime import Runtime
from pactmesh_hitl.settings import Settings

logger = logging.getLogger(__name__)


class ExitBeforePublish:
    """The test hook ``Settings.test_exit_before_publish``: a publisher that ends the
    process, without cleanup, before anything is published (the decision committed, its
    event in the outbox and not on the topic)."""

    async def publish(self, event: Envelope[Any]) -> None:
        """Exit at once, with the status of a process killed by SIGKILL."""
        logger.critical("test hook: exiting before publishing %s %s", event.type, event.event_id)
        logging.shutdown()
        os._exit(128 + signal.SIGKILL)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the hitl service: the review queue, the reviewer API, the expiry sweeper."""
    settings = settings or Settings()
    service = Service(
        settings,
        title="pactmesh hitl",
        description="Stores reviews, serves the reviewer API and expires overdue reviews.",
    )
    decisions: Publisher = service.kafka.publisher(REVIEWS_DECIDED)
    if settings.test_exit_before_publish:
        decisions = ExitBeforePublish()
    relay = Relay.configured(
        decisions,
        topic=REVIEWS_DECIDED,
        settings=settings,
        ready=lambda: service.kafka.broker.running,
    )
    runtime = Runtime(settings=settings, publisher=relay)
    handlers.register(service.kafka, runtime)
    _open_reviews_gauge(service.metrics.meter, runtime)
    app = service.app(
        runtime,
        routers=[reviews.router],
        public=[reviewer_page.router],
        resources=[
            partial(instance_lock, settings),
            partial(_store, runtime),
            partial(_sweeping, runtime),
            partial(_timelines, runtime),
            partial(_counting, runtime),
        ],
    )
    reviewer_page.mount_static(app)
    return app


@asynccontextmanager
async def _store(runtime: Runtime) -> AsyncIterator[None]:
    """The store, its outbox relay and its retention, for as long as the app runs."""
    settings = runtime.settings
    retention = partial(prune, retention_s=settings.review_retention_s)
    async with (
        open_store(settings) as store,
        runtime.publisher.running(store.outbox),
        pruning("hitl", partial(retention, store), interval_s=settings.retention_interval_s),
    ):
        runtime.store = store
        try:
            yield
        finally:
            runtime.store = None


@asynccontextmanager
async def _timelines(runtime: Runtime) -> AsyncIterator[None]:
    runtime.timelines = TimelineClient(runtime.settings.intake_url)
    try:
        yield
    finally:
        await runtime.timelines.aclose()
        runtime.timelines = None


AGE_BUCKETS = ((300.0, "<5m"), (3600.0, "5m-1h"), (86_400.0, "1h-1d"))
AGE_NAMES = (*(name for _limit, name in AGE_BUCKETS), ">1d")
COUNT_EVERY_S = 15.0


def age_bucket(age_s: float) -> str:
    """The age bucket a waiting review is counted in."""
    return next((name for limit, name in AGE_BUCKETS if age_s < limit), ">1d")


def _open_reviews_gauge(meter: Meter, runtime: Runtime) -> None:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        for (priority, age), count in runtime.open_reviews.items():
            yield Observation(count, {"priority": priority, "age": age})

    meter.create_observable_gauge(
        "pactmesh.reviews.open",
        callbacks=[observe],
        unit="{review}",
        description="Reviews waiting for a person, by priority and age",
    )


@asynccontextmanager
async def _counting(runtime: Runtime) -> AsyncIterator[None]:
    """Count the waiting reviews every ``COUNT_EVERY_S`` (a scrape reads the counts, never
    the store)."""

    async def count() -> None:
        while True:
            try:
                now = datetime.now(UTC)
                # Every series from the start, at 0: a dashboard shows none waiting.
                counts = {(p.value, age): 0 for p in ReviewPriority for age in AGE_NAMES}
                for priority, at in await runtime.require_store().open_reviews():
                    key = (priority, age_bucket((now - at).total_seconds()))
                    counts[key] = counts.get(key, 0) + 1
                runtime.open_reviews = counts
            except Exception:
                logger.exception("counting open reviews failed; trying again later")
            await asyncio.sleep(COUNT_EVERY_S)

    task = asyncio.create_task(count(), name="open-reviews")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
    """Expire overdue reviews every ``expiry_check_s``, for as long as it runs (on every
    instance: ``expire_due`` says why that is safe)."""
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
