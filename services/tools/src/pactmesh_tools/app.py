"""The tools service's app factory."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from pactmesh_contracts.topics import TOOL_RESULTS
from pactmesh_kit.broker import EventPublisher, make_broker
from pactmesh_kit.service import create_service_app
from pactmesh_kit.telemetry import setup_telemetry

from pactmesh_tools import handlers
from pactmesh_tools.adapters.sandbox import sandbox_tools
from pactmesh_tools.domain.registry import ToolRegistry
from pactmesh_tools.settings import Settings


def create_app(settings: Settings | None = None, registry: ToolRegistry | None = None) -> FastAPI:
    """Build the tools service over ``registry`` (the sandbox tools by default)."""
    settings = settings or Settings()
    registry = registry or ToolRegistry(sandbox_tools())
    tracer_provider = setup_telemetry(settings)
    broker = make_broker(settings, tracer_provider=tracer_provider)
    handlers.register(
        broker, settings, EventPublisher(broker, settings, produces=[TOOL_RESULTS]), registry
    )

    api = APIRouter(prefix="/v1/tools", tags=["tools"])

    @api.get("")
    async def list_tools() -> list[dict[str, Any]]:
        """Every tool with the JSON Schemas of its arguments and result."""
        return registry.describe()

    return create_service_app(
        settings=settings,
        broker=broker,
        tracer_provider=tracer_provider,
        title="pactmesh tools",
        description="Runs tool calls requested over Kafka.",
        routers=(api,),
    )
