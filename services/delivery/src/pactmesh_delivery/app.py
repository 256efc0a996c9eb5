"""The delivery service's app factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor, RequestInfo
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span
from pactmesh_contracts.topics import AUDIT, WORKFLOW_PROGRESS
from pactmesh_kit.app import Service
from pactmesh_kit.stores import instance_lock
from pactmesh_kit.stores.retention import pruning
from pactmesh_workflows.registry import registry

from pactmesh_delivery import handlers
from pactmesh_delivery.adapters.dispatcher import DeadLetterSink, Dispatcher
from pactmesh_delivery.adapters.egress import EgressGuard, PinnedTransport, RedactingFilter
from pactmesh_delivery.adapters.store import open_stores
from pactmesh_delivery.adapters.transactions import ResultTransactions
from pactmesh_delivery.api.routes import webhooks
from pactmesh_delivery.domain.egress import redact_url
from pactmesh_delivery.domain.retention import prune
from pactmesh_delivery.runtime import Runtime
from pactmesh_delivery.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the delivery service: completed workflows to result topics and webhooks."""
    settings = settings or Settings()
    service = Service(
        settings,
        title="pactmesh delivery",
        description=(
            "Publishes finished workflows' results on their result topics, and POSTs them,"
            " signed, to the webhooks downstream systems register."
        ),
    )
    publisher = service.kafka.publisher(*registry().result_topics(), WORKFLOW_PROGRESS, AUDIT)
    runtime = Runtime(
        settings=settings,
        publisher=publisher,
        egress=EgressGuard(allowed=settings.webhook_allowed_networks),
    )
    handlers.register(service.kafka, runtime)
    dispatching = partial(
        _dispatching, runtime, service.kafka.dead_letters.publish, service.tracer_provider
    )
    return service.app(
        runtime,
        routers=[webhooks.router],
        resources=[partial(instance_lock, settings), partial(_stores, runtime), dispatching],
    )


@asynccontextmanager
async def _stores(runtime: Runtime) -> AsyncIterator[None]:
    """The delivery ledger and the webhook store, their retention, and the requests the
    mesh accepted."""
    settings = runtime.settings
    async with open_stores(settings) as stores:
        retention = partial(
            prune, webhooks=stores.webhooks, ledger=stores.ledger, retention_s=settings.retention_s
        )
        async with (
            pruning("delivery", retention, interval_s=settings.retention_interval_s),
            runtime.provenance.opened(settings),
        ):
            results = ResultTransactions(settings, stores.ledger)
            runtime.webhooks, runtime.results = stores.webhooks, results
            try:
                yield
            finally:
                runtime.webhooks = runtime.results = None
                await results.close()


@asynccontextmanager
async def _dispatching(
    runtime: Runtime, dead_letters: DeadLetterSink, tracer_provider: TracerProvider
) -> AsyncIterator[None]:
    """The webhook dispatcher, running as a task until the app stops."""
    settings = runtime.settings
    transport = PinnedTransport(runtime.egress, max_connections=settings.webhook_concurrency)
    _redact_httpx_logs()
    async with httpx.AsyncClient(
        transport=transport, timeout=settings.webhook_timeout_s, follow_redirects=False
    ) as client:
        # A client span per POST, with the trace context in its headers.
        HTTPXClientInstrumentor.instrument_client(
            client, tracer_provider=tracer_provider, request_hook=_redact_span_url
        )
        dispatcher = Dispatcher(
            outbox=runtime.require_webhooks(),
            client=client,
            dead_letters=dead_letters,
            policy=settings.retry_policy,
            service=settings.service_name,
            tracer=tracer_provider.get_tracer(__name__),
            concurrency=settings.webhook_concurrency,
            tenant_concurrency=settings.webhook_tenant_concurrency,
            poll_interval_s=settings.webhook_poll_interval_s,
        )
        task = asyncio.create_task(dispatcher.run(), name="webhook-dispatcher")
        runtime.dispatcher = dispatcher
        try:
            yield
        finally:
            runtime.dispatcher = None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dispatcher.drain(timeout_s=min(5.0, settings.webhook_timeout_s))


def _redact_httpx_logs() -> None:
    """httpx logs each request's URL: redacted, like every other place a URL shows."""
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())


async def _redact_span_url(span: Span, request: RequestInfo) -> None:
    """The client span's URL without credentials or query values (the instrumentation
    redacts only a few well-known query keys)."""
    attributes = getattr(span, "attributes", None) or {}
    for key in ("url.full", "http.url"):
        if key in attributes:
            span.set_attribute(key, redact_url(str(request.url)))
