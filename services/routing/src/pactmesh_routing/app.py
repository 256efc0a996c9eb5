"""Routing's app factory."""

from __future__ import annotations

from fastapi import FastAPI
from pactmesh_contracts.topics import REQUESTS_ROUTED, WORKFLOW_PROGRESS
from pactmesh_kit.broker import EventPublisher, make_broker
from pactmesh_kit.service import create_service_app
from pactmesh_kit.telemetry import setup_telemetry

from pactmesh_routing import handlers
from pactmesh_routing.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build routing: one consumer of accepted requests."""
    settings = settings or Settings()
    tracer_provider = setup_telemetry(settings)
    broker = make_broker(settings, tracer_provider=tracer_provider)
    publisher = EventPublisher(broker, settings, produces=[REQUESTS_ROUTED, WORKFLOW_PROGRESS])
    handlers.register(broker, settings, publisher)
    return create_service_app(
        settings=settings,
        broker=broker,
        tracer_provider=tracer_provider,
        title="pactmesh routing",
        description="Classifies accepted requests into registered workflows.",
    )
