"""The app builder: one pactmesh service's telemetry, Kafka side, authentication and
FastAPI app, assembled the same way in every service::

    def create_app(settings: Settings | None = None) -> FastAPI:
        settings = settings or Settings()
        service = Service(settings, title="pactmesh intake", description="...")
        runtime = Runtime(settings=settings, publisher=service.kafka.publisher(...))
        handlers.register(service.kafka, runtime)
        return service.app(runtime, routers=[requests.router], resources=[...])

What every app gets from here, in one place:

* a lifespan that opens ``resources`` in order and then starts the broker, waiting for
  each while its dependency is down, and on the way out drains and stops the broker
  before closing them in reverse order: no handler ever runs without them
  (``pactmesh_kit.lifecycle``);
* ``/metrics`` for Prometheus (``pactmesh_kit.metrics``; a token when
  ``PACTMESH_METRICS_TOKEN`` is set);
* ``/health/live`` and ``/health/ready`` (Kafka answers and no partition is stalled by a
  failing dependency), the AsyncAPI document
  FastStream generates (``/asyncapi``, ``.json``, ``.yaml``) and OpenAPI (``/docs``);
* a bearer token required on every route of ``routers``: only ``public`` routers and
  the routes above answer without one (an explicit opt-out, never an opt-in);
* every ``PactmeshError`` a route lets through answered by its kind
  (``pactmesh_kit.errors.HTTP_STATUS``), and 422s that can encode any input;
* the runtime at ``app.state.runtime``, which the services' ``RuntimeDep`` reads
  (``get_runtime``), and a span per request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI, get_asyncapi_html
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from pactmesh_kit import collector
from pactmesh_kit.auth.http import Authenticator, authenticated
from pactmesh_kit.errors import PactmeshError
from pactmesh_kit.kafka import Kafka
from pactmesh_kit.lifecycle import Resource, lifespan
from pactmesh_kit.metrics import Metrics, metrics_router
from pactmesh_kit.settings import KitSettings
from pactmesh_kit.telemetry import setup_logging, setup_telemetry

logger = logging.getLogger(__name__)

__all__ = ["Resource", "Service", "get_runtime", "serve"]

VERSION = "0.1.0"


UNAUTHENTICATED: dict[int | str, dict[str, Any]] = {
    401: {"description": "No bearer token, or an invalid, expired or foreign one."}
}
"""What every authenticated route may answer, documented once for all of them."""


class Service:
    """One service's telemetry, Kafka side and authenticator, and the app built on them."""

    def __init__(
        self,
        settings: KitSettings,
        *,
        title: str,
        description: str,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        """``tracer_provider`` defaults to one exporting as ``settings`` say (OTLP or a
        local file); tests pass their own."""
        self.settings = settings
        self.title = title
        self.description = description
        self.tracer_provider = tracer_provider or setup_telemetry(settings)
        self.metrics = Metrics(settings)
        self.kafka = Kafka(settings, tracer_provider=self.tracer_provider, meter=self.metrics.meter)
        # Built now, so that a bad key or policy fails at start-up, not at the first call.
        self.authenticator = Authenticator.from_settings(settings)

    def app(
        self,
        runtime: object,
        *,
        routers: Sequence[APIRouter] = (),
        public: Sequence[APIRouter] = (),
        resources: Sequence[Resource] = (),
    ) -> FastAPI:
        """The service's FastAPI app: ``routers`` behind a bearer token, ``public``
        routers without one, ``resources`` held open while it runs."""
        app = FastAPI(
            title=self.title,
            description=self.description,
            version=VERSION,
            lifespan=lifespan(self.kafka, resources, self.settings),
        )
        app.state.runtime = runtime
        app.state.authenticator = self.authenticator
        app.add_exception_handler(RequestValidationError, validation_failed)
        app.add_exception_handler(PactmeshError, refused)
        token = self.settings.metrics_token
        scrape = metrics_router(self.metrics, token.get_secret_value() if token else None)
        for router in (health_router(self.kafka), self._asyncapi_router(), scrape, *public):
            app.include_router(router)
        for router in routers:
            app.include_router(
                router, dependencies=[Depends(authenticated)], responses=UNAUTHENTICATED
            )
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.tracer_provider,
            excluded_urls="health/.*,asyncapi.*,metrics",
        )
        return app

    def _asyncapi_router(self) -> APIRouter:
        return asyncapi_router(self.kafka.broker, title=self.title, description=self.description)


def get_runtime(request: Request) -> Any:
    """The app's runtime (``app.state.runtime``): each service's ``RuntimeDep`` types it."""
    return request.app.state.runtime


def health_router(kafka: Kafka) -> APIRouter:
    """``/health/live`` (the process answers) and ``/health/ready`` (Kafka answers, and
    no partition is stalled retrying a message through a dependency's outage)."""
    api = APIRouter(prefix="/health", tags=["health"])

    @api.get("/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @api.get(
        "/ready",
        responses={503: {"description": "Kafka does not answer, or partitions are stalled."}},
    )
    async def ready(response: Response) -> dict[str, Any]:
        if stalls := kafka.stalls():
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
            return {"status": "stalled", "stalled": [stall.describe() for stall in stalls]}
        if await kafka.broker.ping(timeout=2.0):
            return {"status": "ok"}
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "kafka unreachable"}

    return api


def asyncapi_router(broker: KafkaBroker, *, title: str, description: str) -> APIRouter:
    """The service's AsyncAPI document, generated by FastStream from its subscribers and
    publishers: ``/asyncapi`` (HTML), ``/asyncapi.json`` and ``/asyncapi.yaml``."""
    factory = AsyncAPI(broker, title=title, version=VERSION, description=description)
    api = APIRouter(tags=["asyncapi"], include_in_schema=False)

    @api.get("/asyncapi", response_class=HTMLResponse)
    async def asyncapi_html() -> str:
        return get_asyncapi_html(factory.to_specification())

    @api.get("/asyncapi.json")
    async def asyncapi_json() -> Response:
        return Response(factory.to_specification().to_json(), media_type="application/json")

    @api.get("/asyncapi.yaml")
    async def asyncapi_yaml() -> Response:
        return Response(factory.to_specification().to_yaml(), media_type="application/yaml")

    return api


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII characters escaped: a field error echoes the input, and an
    input with an unpaired surrogate (``"\\ud800"`` in the body) cannot be encoded as
    UTF-8, so FastAPI's own 422 handler fails with a 500 on it."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode()


async def validation_failed(_request: Request, exc: Exception) -> JSONResponse:
    """422 with every field error, as FastAPI answers, but encodable whatever the input."""
    assert isinstance(exc, RequestValidationError)
    return AsciiJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


async def refused(_request: Request, exc: Exception) -> JSONResponse:
    """A ``PactmeshError`` answered with the status of its kind and its ``detail``
    (an internal error's own message stays in the log)."""
    assert isinstance(exc, PactmeshError)
    if exc.kind == "internal":
        logger.error("internal error (%s)", exc.code, exc_info=exc)
        return AsciiJSONResponse({"detail": f"internal error ({exc.code})"}, status_code=500)
    return AsciiJSONResponse({"detail": jsonable_encoder(exc.detail)}, status_code=exc.http_status)


def serve(factory: str, settings: KitSettings, *, port: int) -> None:
    """Run a service's app factory under uvicorn, logging with trace ids; on SIGTERM it
    stops within ``settings.shutdown_grace_s`` (uvicorn's wait for open connections is
    the first third of it). The garbage collector runs with ``settings.gc_thresholds``
    (``collector``)."""
    setup_logging()
    collector.configure(settings.gc_thresholds)
    uvicorn.run(
        factory,
        factory=True,
        host=settings.http_host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        loop=settings.event_loop,
        timeout_graceful_shutdown=max(1, round(settings.shutdown_phase_s)),
    )
