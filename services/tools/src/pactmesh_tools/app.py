"""The tools service's app factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing, asynccontextmanager
from functools import partial

import httpx
from fastapi import FastAPI
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from pactmesh_contracts.topics import AUDIT, TOOL_RESULTS
from pactmesh_kit.app import Service
from pactmesh_kit.auth import load_access_policy
from pactmesh_kit.provenance import Provenance
from pactmesh_kit.stores import instance_lock

from pactmesh_tools import handlers
from pactmesh_tools.adapters.http import HttpBackends
from pactmesh_tools.adapters.inbox import open_inbox
from pactmesh_tools.adapters.sandbox import BACKENDS, sandbox_tools
from pactmesh_tools.api.routes import tools
from pactmesh_tools.domain.dispatcher import Dispatcher
from pactmesh_tools.domain.registry import ToolRegistry
from pactmesh_tools.domain.resilience import Backends
from pactmesh_tools.runtime import Runtime
from pactmesh_tools.settings import Settings


def create_app(
    settings: Settings | None = None, *, sandbox_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """Build the tools service over the sandbox at ``settings.sandbox_url``
    (``sandbox_transport`` replaces the network, for tests)."""
    settings = settings or Settings()
    service = Service(
        settings,
        title="pactmesh tools",
        description="Runs tool calls requested over Kafka against the sandbox backends.",
    )
    tracer = service.tracer_provider.get_tracer(__name__)
    backends = Backends(settings.backend_limits)
    http = HttpBackends(
        base_url=settings.sandbox_url,
        guards=backends,
        names=BACKENDS,
        transport=sandbox_transport,
        tracer_provider=service.tracer_provider,
    )
    registry = ToolRegistry(
        sandbox_tools(http),
        policy=settings.tool_policy,
        tracer=tracer,
        meter=service.metrics.meter,
        capture_content=settings.capture_content,
    )
    _breaker_gauge(service.metrics.meter, backends)
    provenance = Provenance()
    provenance.subscribe(service.kafka)
    dispatcher = Dispatcher(
        registry=registry,
        access=load_access_policy(settings.access_policy_file),
        requests=provenance,
        publisher=service.kafka.publisher(TOOL_RESULTS, AUDIT),
        limits=settings.dispatch_limits(),
        tracer=tracer,
        ready=lambda: service.kafka.broker.running,
    )
    runtime = Runtime(
        settings=settings, dispatcher=dispatcher, registry=registry, backends=backends
    )
    handlers.register(service.kafka, runtime)
    return service.app(
        runtime,
        routers=[tools.router],
        # The backends' HTTP clients close last, after the dispatcher's calls stopped.
        resources=[
            partial(instance_lock, settings),
            partial(aclosing, http),
            partial(_dispatching, runtime, provenance),
        ],
    )


def _breaker_gauge(meter: Meter, backends: Backends) -> None:
    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        for backend, state in backends.breaker_states().items():
            yield Observation(state, {"pactmesh.tool.backend": backend})

    meter.create_observable_gauge(
        "pactmesh.tool.breaker.state",
        callbacks=[observe],
        description="Each backend's circuit breaker: 0 closed, 1 half-open, 2 open",
    )


@asynccontextmanager
async def _dispatching(runtime: Runtime, provenance: Provenance) -> AsyncIterator[None]:
    """The accepted requests, the inbox and its dispatcher, which publishes results once
    the broker has started (resources open before it)."""
    async with (
        provenance.opened(runtime.settings),
        open_inbox(runtime.settings) as inbox,
        runtime.dispatcher.running(inbox),
    ):
        yield
