"""The orchestrator's app factory."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from pactmesh_contracts.topics import (
    AUDIT,
    REVIEWS_REQUESTED,
    TOOL_CALLS,
    TOOL_RESULTS,
    WORKFLOW_COMPLETED,
    WORKFLOW_PROGRESS,
)
from pactmesh_kit.app import Service
from pactmesh_kit.auth.policy import load_access_policy
from pactmesh_kit.genai import GenAiTelemetry
from pactmesh_kit.stores import instance_lock
from pactmesh_kit.stores.retention import pruning
from pactmesh_reasoning.embeddings import load_embeddings
from pactmesh_reasoning.models import ModelRouter
from pactmesh_reasoning.semantic_cache import SemanticCache
from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.registry import registry

from pactmesh_orchestrator import handlers
from pactmesh_orchestrator.adapters.persistence import open_persistence
from pactmesh_orchestrator.api.routes import cache, workflows
from pactmesh_orchestrator.domain.engine import Engine
from pactmesh_orchestrator.domain.timers import Sweeper, TimerSettings
from pactmesh_orchestrator.domain.workflows import build_graphs
from pactmesh_orchestrator.runtime import Runtime
from pactmesh_orchestrator.settings import Settings

logger = logging.getLogger(__name__)


class ExitAfterStep:
    """The test hook ``Settings.test_exit_after_step``: ends the process, without
    cleanup, after the ``step``-th step this process runs of a run, once per run (the
    runs that made a process exit are files under ``fired``)."""

    def __init__(self, step: int, fired: Path) -> None:
        self._step = step
        self._fired = fired
        self._counts: dict[uuid.UUID, int] = {}
        fired.mkdir(parents=True, exist_ok=True)

    def __call__(self, workflow_id: uuid.UUID) -> None:
        """Count a step of ``workflow_id``'s run; exit, with the status of a process
        killed by SIGKILL, at its ``step``-th unless the run made a process exit before."""
        count = self._counts[workflow_id] = self._counts.get(workflow_id, 0) + 1
        marker = self._fired / str(workflow_id)
        if count != self._step or marker.exists():
            return
        marker.touch()
        logger.critical("test hook: exiting after step %d of run %s", count, workflow_id)
        logging.shutdown()
        os._exit(128 + signal.SIGKILL)


def _after_step(settings: Settings) -> Callable[[uuid.UUID], None] | None:
    if not settings.test_exit_after_step:
        return None
    fired = settings.data_dir / "orchestrator-test-exits"
    return ExitAfterStep(settings.test_exit_after_step, fired)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the orchestrator: registered workflows on their checkpoint store."""
    settings = settings or Settings()
    service = Service(
        settings,
        title="pactmesh orchestrator",
        description="Runs each workflow as a checkpointed LangGraph graph.",
    )
    # Tool results: the timeouts of calls past their deadline (``domain.timers``).
    publisher = service.kafka.publisher(
        TOOL_CALLS, REVIEWS_REQUESTED, WORKFLOW_COMPLETED, WORKFLOW_PROGRESS, AUDIT, TOOL_RESULTS
    )
    runtime = Runtime(settings=settings, publisher=publisher)
    handlers.register(service.kafka, runtime)
    # Loaded now, so that a bad workflow module or gate policy fails at start-up.
    policy = GatePolicy.load(settings.gate_policy)
    policy.check(registry().gates)
    engine = partial(_engine, runtime, policy, service)
    return service.app(
        runtime,
        routers=[workflows.router, cache.router],
        resources=[partial(instance_lock, settings), engine],
    )


@asynccontextmanager
async def _engine(runtime: Runtime, policy: GatePolicy, service: Service) -> AsyncIterator[None]:
    """The semantic cache, the checkpoint store and the engine running the graphs."""
    settings = runtime.settings
    runtime.cache = await _open_cache(settings)
    if runtime.cache is not None:
        _cache_counters(service.metrics.meter, runtime.cache)
    telemetry = GenAiTelemetry(
        tracer_provider=service.tracer_provider,
        meter_provider=service.metrics.provider,
        capture_content=settings.capture_content,
        prices=settings.model_prices,
    )
    reasoning = Reasoning(
        models=ModelRouter(observer=telemetry),
        cache=runtime.cache,
        prices=settings.model_prices,
        budgets=settings.budgets,
    )
    reasoning.models.build_all()  # providers' packages imported now, not at a first call
    async with open_persistence(settings) as store:
        graphs = build_graphs(checkpointer=store.checkpointer, gates=policy, models=reasoning)
        runtime.engine = Engine(
            graphs=graphs,
            checkpointer=store.checkpointer,
            publisher=runtime.publisher,
            outbox=store.outbox,
            reviewers=load_access_policy(settings.access_policy_file),
            tool_timeout_s=settings.tool_timeout_s,
            token_window_s=settings.token_window_ms / 1000,
            durability=settings.checkpoint_durability,
            tracer=service.tracer_provider.get_tracer("pactmesh.orchestrator"),
            meter=service.metrics.meter,
            prices=settings.model_prices,
            wakeups=store.wakeups,
            timers=TimerSettings(
                deadline_margin_s=settings.tool_deadline_margin_s,
                stall_after_s=settings.stall_after_s,
                finished_ttl_s=settings.checkpoint_ttl_s,
            ),
            after_step=_after_step(settings),
        )
        sweeper = Sweeper(
            runtime.engine,
            store.wakeups,
            lease_s=settings.stall_after_s,
            batch=settings.sweep_batch,
        )
        logger.info("workflow state in %s; workflows: %s", store.kind, ", ".join(graphs))
        try:
            async with pruning("orchestrator", sweeper.sweep, interval_s=settings.sweep_interval_s):
                yield
        finally:
            runtime.engine = None


def _cache_counters(meter: Meter, cache: SemanticCache) -> None:
    """The semantic cache's hits and misses, read from its own counters when scraped."""

    def observe(_options: CallbackOptions) -> Iterable[Observation]:
        stats = cache.stats()
        yield Observation(stats.hits, {"result": "hit"})
        yield Observation(stats.misses, {"result": "miss"})

    meter.create_observable_counter(
        "pactmesh.cache.lookups",
        callbacks=[observe],
        unit="{lookup}",
        description="Semantic cache lookups",
    )


async def _open_cache(settings: Settings) -> SemanticCache | None:
    """This instance's semantic cache; the embeddings model loads off the event loop."""
    if not settings.cache_enabled:
        return None
    embeddings = await asyncio.to_thread(load_embeddings, settings.cache_embeddings)
    return SemanticCache(embeddings, threshold=settings.cache_threshold, ttl_s=settings.cache_ttl_s)
