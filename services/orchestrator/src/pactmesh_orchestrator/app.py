"""The orchestrator's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from pactmesh_contracts.topics import TOOL_CALLS, WORKFLOW_COMPLETED, WORKFLOW_PROGRESS
from pactmesh_kit.broker import EventPublisher, make_broker
from pactmesh_kit.service import create_service_app
from pactmesh_kit.telemetry import setup_telemetry

from pactmesh_orchestrator import api, handlers
from pactmesh_orchestrator.adapters.outbox import open_outbox
from pactmesh_orchestrator.domain.engine import Engine
from pactmesh_orchestrator.domain.registry import discover
from pactmesh_orchestrator.runtime import Runtime
from pactmesh_orchestrator.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the orchestrator: registered workflows on a SQLite checkpointer."""
    settings = settings or Settings()
    tracer_provider = setup_telemetry(settings)
    broker = make_broker(settings, tracer_provider=tracer_provider)
    publisher = EventPublisher(
        broker, settings, produces=[TOOL_CALLS, WORKFLOW_COMPLETED, WORKFLOW_PROGRESS]
    )
    runtime = Runtime(settings=settings, publisher=publisher)
    handlers.register(broker, runtime)
    definitions = discover()

    @asynccontextmanager
    async def resources(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        checkpoints = str(settings.data_dir / "orchestrator-checkpoints.sqlite3")
        async with (
            AsyncSqliteSaver.from_conn_string(checkpoints) as checkpointer,
            open_outbox(settings.data_dir / "orchestrator-outbox.sqlite3") as outbox,
        ):
            runtime.engine = Engine(
                graphs={
                    n: d.build().compile(checkpointer=checkpointer) for n, d in definitions.items()
                },
                checkpointer=checkpointer,
                publisher=publisher,
                outbox=outbox,
                tool_timeout_s=settings.tool_timeout_s,
            )
            yield
            runtime.engine = None

    app = create_service_app(
        settings=settings,
        broker=broker,
        tracer_provider=tracer_provider,
        title="pactmesh orchestrator",
        description="Runs each workflow as a checkpointed LangGraph graph.",
        resources=resources,
        routers=(api.router,),
    )
    app.state.runtime = runtime
    return app
