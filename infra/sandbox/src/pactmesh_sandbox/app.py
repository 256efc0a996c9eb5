"""The sandbox's app factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from pactmesh_sandbox.api.routes import (
    carriers,
    crm,
    erp,
    faults,
    health,
    kb,
    ledger,
    payer,
    payments,
    procurement,
)
from pactmesh_sandbox.faults import FaultInjector, FaultMiddleware
from pactmesh_sandbox.settings import Settings
from pactmesh_sandbox.store import IdempotencyConflict, Store

logger = logging.getLogger(__name__)


class SandboxApp(FastAPI):
    """FastAPI behind the fault layer, which sees each request before anything FastAPI
    or Starlette wrap around it: their middleware and telemetry replace ``send``, and
    only uvicorn's own ``send`` can drop a connection (see ``drop_connection``)."""

    faults: FaultMiddleware

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.faults(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_409_CONFLICT)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The sandbox: its backends, the ledger, fault switches and health probes.

    No Kafka and no tracing: it stands for third-party systems outside the mesh.
    """
    settings = settings or Settings()
    store = Store(settings.database_path)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        logger.info("sandbox ready, ledger in %s", settings.database_path)
        try:
            yield
        finally:
            store.close()

    app = SandboxApp(
        title="pactmesh sandbox",
        description="Enterprise backends for the tools service, with switchable faults.",
        version="0.1.0",
        lifespan=lifespan,
        # It stands for systems outside the mesh: no spans of its own in the mesh's traces.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    injector = FaultInjector(seed=settings.seed)
    app.faults = FaultMiddleware(app._serve, injector=injector, hang_s=settings.hang_s)
    app.state.store = store
    app.state.faults = injector
    app.add_exception_handler(IdempotencyConflict, _conflict)
    for module in (kb, crm, procurement, erp, carriers, payments, payer, ledger, faults, health):
        app.include_router(module.router)
    return app
