"""The delivery service's app factory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from faststream.kafka import KafkaBroker
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from pactmesh_contracts.events import DeadLetter
from pactmesh_contracts.topics import DEAD_LETTERS, WORKFLOW_PROGRESS
from pactmesh_kit.broker import JSON_HEADERS, EventPublisher, encode, make_broker
from pactmesh_kit.service import create_service_app
from pactmesh_kit.telemetry import setup_telemetry
from pactmesh_workflows.registry import registry

from pactmesh_delivery import handlers
from pactmesh_delivery.adapters.ledger import open_ledger
from pactmesh_delivery.adapters.webhooks import SqliteWebhookStore, open_webhook_store
from pactmesh_delivery.api.routes import webhooks
from pactmesh_delivery.dispatcher import DeadLetterSink, Dispatcher
from pactmesh_delivery.runtime import Runtime
from pactmesh_delivery.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the delivery service: completed workflows to result topics and webhooks."""
    settings = settings or Settings()
    tracer_provider = setup_telemetry(settings)
    broker = make_broker(settings, tracer_provider=tracer_provider)
    publisher = EventPublisher(
        broker, settings, produces=[*registry().result_topics(), WORKFLOW_PROGRESS]
    )
    runtime = Runtime(settings=settings, publisher=publisher)
    handlers.register(broker, runtime)
    dead_letters = dead_letter_sink(broker, settings)

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        path = settings.data_dir / "delivery.sqlite3"
        async with open_ledger(path) as ledger, open_webhook_store(path) as store:
            runtime.ledger, runtime.webhooks = ledger, store
            async with dispatching(settings, store, dead_letters, tracer_provider) as dispatcher:
                runtime.dispatcher = dispatcher
                yield
                runtime.dispatcher = None
            runtime.ledger = runtime.webhooks = None

    app = create_service_app(
        settings=settings,
        broker=broker,
        tracer_provider=tracer_provider,
        title="pactmesh delivery",
        description=(
            "Publishes finished workflows' results on their result topics, and POSTs them,"
            " signed, to the webhooks downstream systems register."
        ),
        resources=resources,
        routers=(webhooks.router,),
    )
    app.state.runtime = runtime
    return app


def dead_letter_sink(broker: KafkaBroker, settings: Settings) -> DeadLetterSink:
    """Publishes dead-letter records the way the kit's consumers do (same topic, JSON)."""
    topic = DEAD_LETTERS.qualified(settings.topic_prefix)

    async def publish(letter: DeadLetter, key: bytes | None) -> None:
        await broker.publish(encode(letter), topic, key=key, headers=JSON_HEADERS)

    return publish


@asynccontextmanager
async def dispatching(
    settings: Settings,
    store: SqliteWebhookStore,
    dead_letters: DeadLetterSink,
    tracer_provider: TracerProvider | None,
) -> AsyncIterator[Dispatcher]:
    """The webhook dispatcher, running as a task until the app stops."""
    limits = httpx.Limits(max_connections=settings.webhook_concurrency)
    async with httpx.AsyncClient(
        timeout=settings.webhook_timeout_s, limits=limits, follow_redirects=False
    ) as client:
        if tracer_provider is not None:
            # A client span per POST, with the trace context in its headers.
            HTTPXClientInstrumentor.instrument_client(client, tracer_provider=tracer_provider)
        dispatcher = Dispatcher(
            outbox=store,
            client=client,
            dead_letters=dead_letters,
            policy=settings.retry_policy,
            service=settings.service_name,
            tracer=None if tracer_provider is None else tracer_provider.get_tracer(__name__),
            concurrency=settings.webhook_concurrency,
            poll_interval_s=settings.webhook_poll_interval_s,
        )
        task = asyncio.create_task(dispatcher.run(), name="webhook-dispatcher")
        try:
            yield dispatcher
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await dispatcher.drain(timeout_s=min(5.0, settings.webhook_timeout_s))
