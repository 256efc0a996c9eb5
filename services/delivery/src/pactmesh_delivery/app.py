"""The delivery service's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pactmesh_contracts.topics import RESULT_TOPICS, WORKFLOW_PROGRESS
from pactmesh_kit.broker import EventPublisher, make_broker
from pactmesh_kit.service import create_service_app
from pactmesh_kit.telemetry import setup_telemetry

from pactmesh_delivery import handlers
from pactmesh_delivery.adapters.ledger import open_ledger
from pactmesh_delivery.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the delivery service: completed workflows to result topics."""
    settings = settings or Settings()
    tracer_provider = setup_telemetry(settings)
    broker = make_broker(settings, tracer_provider=tracer_provider)
    publisher = EventPublisher(broker, settings, produces=[*RESULT_TOPICS, WORKFLOW_PROGRESS])
    runtime = handlers.Runtime(settings=settings, publisher=publisher)
    handlers.register(broker, runtime)

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        async with open_ledger(settings.data_dir / "delivery.sqlite3") as ledger:
            runtime.ledger = ledger
            yield
            runtime.ledger = None

    return create_service_app(
        settings=settings,
        broker=broker,
        tracer_provider=tracer_provider,
        title="pactmesh delivery",
        description="Publishes finished workflows' results to downstream consumers.",
        resources=resources,
    )
