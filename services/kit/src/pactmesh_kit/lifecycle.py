"""A service's start and stop: wait for what it depends on, drain what it holds.

Start-up opens the service's resources (stores, Postgres pools, workers) and then starts
its Kafka side. Either may find its dependency down (Postgres restarting, the broker not
up yet): instead of exiting, start-up retries with capped exponential backoff and says,
at every retry, what it waits for and why. ``startup_timeout_s`` bounds the wait (by
default it is unbounded, as a process supervisor's restart loop would be, minus the
restarts).

Shutdown (SIGTERM: uvicorn stops serving HTTP, waiting a third of ``shutdown_grace_s``
for the requests in hand, then leaves the lifespan) takes no new batch, gives up retries
in progress, lets the batches in hand finish and commit within the next third
(FastStream's graceful timeout), then stops the consumers (which leave their groups, so
their partitions move at once) and the producer, and closes the resources: within the
grace, also when Kafka is unreachable.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, TypeVar

from fastapi import FastAPI

from pactmesh_kit import collector
from pactmesh_kit.kafka import Kafka
from pactmesh_kit.kafka.clients import reachable
from pactmesh_kit.settings import KitSettings

logger = logging.getLogger("pactmesh_kit.app")

Resource = Callable[[], AbstractAsyncContextManager[Any]]
"""Something the service holds open while it runs (a store, a worker task): entered
before the broker starts, exited after it stops."""

T = TypeVar("T")

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 15.0


def name_of(resource: Resource) -> str:
    """A resource's name for the log: its function's, through ``functools.partial``."""
    function = getattr(resource, "func", resource)
    return str(getattr(function, "__name__", resource)).strip("_") or repr(resource)


async def patiently(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    service: str,
    timeout_s: float | None,
    undo: Callable[[], Awaitable[object]] | None = None,
) -> T:
    """``attempt()``'s result, retrying with capped exponential backoff while it raises;
    ``undo()`` cleans up a failed attempt. Gives up (raises) after ``timeout_s``, or at
    once on an error waiting cannot cure (another instance holds this data dir)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    for number in itertools.count(1):
        try:
            return await attempt()
        except Exception as exc:
            if undo is not None:
                await _quietly(undo)
            if not getattr(exc, "waiting_cures", True):
                logger.error("%s: cannot start: %s", service, exc)
                raise
            pause_s = min(BACKOFF_INITIAL_S * 2 ** min(number - 1, 20), BACKOFF_MAX_S)
            if deadline is not None and time.monotonic() + pause_s > deadline:
                logger.error("%s: gave up waiting for %s after %.0f s", service, what, timeout_s)
                raise
            logger.warning(
                "%s: waiting for %s (attempt %d: %s: %s); retrying in %.1f s",
                service,
                what,
                number,
                type(exc).__name__,
                str(exc).splitlines()[0][:300] if str(exc) else "",
                pause_s,
            )
            await asyncio.sleep(pause_s)
    raise AssertionError("unreachable")  # pragma: no cover


async def _quietly(undo: Callable[[], Awaitable[object]]) -> None:
    try:
        await undo()
    except Exception:
        logger.debug("cleaning up a failed start-up attempt failed too", exc_info=True)


def lifespan(
    kafka: Kafka, resources: Sequence[Resource], settings: KitSettings
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: resources in order, then Kafka, each waited for; then what
    start-up created is frozen out of the garbage collector (``collector``). On the way
    out, Kafka drained and stopped before the resources close in reverse order."""
    name, timeout_s = settings.service_name, settings.startup_timeout_s

    @asynccontextmanager
    async def run(_app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for resource in resources:

                async def enter(resource: Resource = resource) -> Any:
                    return await stack.enter_async_context(resource())

                what = name_of(resource)
                await patiently(enter, what=what, service=name, timeout_s=timeout_s)
            broker, where = kafka.broker, f"Kafka at {settings.kafka_bootstrap_servers}"
            await patiently(
                lambda: reachable(settings), what=where, service=name, timeout_s=timeout_s
            )
            await patiently(
                broker.start, what=where, service=name, timeout_s=timeout_s, undo=broker.stop
            )
            stack.push_async_callback(_stopped, kafka, name, 2 * settings.shutdown_phase_s)
            collector.ready()
            logger.info("%s ready", name)
            yield

    return run


async def _stopped(kafka: Kafka, name: str, within_s: float) -> None:
    """Drain, then stop the broker: FastStream waits a phase of the grace for the batches
    in hand, and closing the consumers and the producer gets the next; a broker that is
    unreachable (its consumers cannot leave their groups, its producer cannot flush) is
    left behind after ``within_s``: what was not committed is redelivered."""
    started = time.monotonic()
    logger.info("%s stopping: no new work; finishing the batches in hand", name)
    await kafka.drain()
    try:
        async with asyncio.timeout(within_s):
            await kafka.broker.stop()
    except TimeoutError:
        logger.warning(
            "%s: Kafka did not stop within %.0f s (is it reachable?); exiting without it",
            name,
            within_s,
        )
        return
    logger.info("%s stopped (Kafka drained in %.1f s)", name, time.monotonic() - started)
