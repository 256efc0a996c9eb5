"""The tools service's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI
from pactmesh_contracts.topics import AUDIT, TOOL_RESULTS
from pactmesh_kit.auth import load_access_policy
from pactmesh_kit.kafka import Kafka
from pactmesh_kit.service import create_service_app
from pactmesh_kit.telemetry import setup_telemetry

from pactmesh_tools import handlers
from pactmesh_tools.adapters.http import HttpBackends
from pactmesh_tools.adapters.inbox import INBOX_FILE, open_inbox
from pactmesh_tools.adapters.sandbox import BACKENDS, sandbox_tools
from pactmesh_tools.dispatcher import Dispatcher
from pactmesh_tools.domain.registry import ToolRegistry
from pactmesh_tools.domain.resilience import Backends
from pactmesh_tools.settings import Settings


def create_app(
    settings: Settings | None = None, *, sandbox_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the tools service over the sandbox at ``settings.sandbox_url``
    (``sandbox_transport`` replaces the network, for tests)."""
    settings = settings or Settings()
    tracer_provider = setup_telemetry(settings)
    guards = Backends(settings.backend_limits)
    http = HttpBackends(
        base_url=settings.sandbox_url,
        guards=guards,
        names=BACKENDS,
        transport=sandbox_transport,
        tracer_provider=tracer_provider,
    )
    registry = ToolRegistry(
        sandbox_tools(http),
        policy=settings.tool_policy,
        tracer=tracer_provider.get_tracer(__name__),
    )
    kafka = Kafka(settings, tracer_provider=tracer_provider)
    dispatcher = Dispatcher(
        registry=registry,
        access=load_access_policy(settings.access_policy_file),
        publisher=kafka.publisher(TOOL_RESULTS, AUDIT),
        limits=settings.dispatch_limits(),
        tracer=tracer_provider.get_tracer(__name__),
        ready=lambda: kafka.broker.running,
    )
    handlers.register(kafka, dispatcher)

    @asynccontextmanager
    async def resources(_app: FastAPI) -> AsyncIterator[None]:
        """The HTTP clients, the inbox and its dispatcher, which publishes results
        once the broker has started (the kit opens resources before it)."""
        try:
            async with (
                open_inbox(settings.data_dir / INBOX_FILE) as inbox,
                dispatcher.running(inbox),
            ):
                yield
        finally:
            await http.aclose()

    return create_service_app(
        settings=settings,
        broker=kafka.broker,
        tracer_provider=tracer_provider,
        title="pactmesh tools",
        description="Runs tool calls requested over Kafka against the sandbox backends.",
        resources=resources,
        routers=(tools_router(registry, guards),),
    )


def tools_router(registry: ToolRegistry, guards: Backends) -> APIRouter:
    """``GET /v1/tools`` (the registry) and ``GET /v1/tools/backends`` (their breakers)."""
    api = APIRouter(prefix="/v1/tools", tags=["tools"])

    @api.get("")
    async def list_tools() -> list[dict[str, Any]]:
        """Every tool with the JSON Schemas of its arguments and result."""
        return registry.describe()

    @api.get("/backends")
    async def list_backends() -> list[dict[str, Any]]:
        """Every backend's circuit breaker state and concurrency slots in use."""
        return guards.describe()

    return api
