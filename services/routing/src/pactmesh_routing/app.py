"""Routing's app factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from pactmesh_contracts.topics import AUDIT, REQUESTS_ROUTED, WORKFLOW_COMPLETED, WORKFLOW_PROGRESS
from pactmesh_kit.app import Service
from pactmesh_kit.auth import load_access_policy
from pactmesh_kit.genai import GenAiTelemetry
from pactmesh_reasoning.classifier import ExampleClassifier
from pactmesh_reasoning.models import ModelRouter

from pactmesh_routing import handlers
from pactmesh_routing.adapters.models import load_classifier, routing_models
from pactmesh_routing.domain.router import Router
from pactmesh_routing.runtime import Runtime
from pactmesh_routing.settings import Settings

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build routing: one consumer of accepted requests, deciding through the models."""
    settings = settings or Settings()
    service = Service(
        settings,
        title="pactmesh routing",
        description="Classifies accepted requests into registered workflows.",
    )
    nearest = load_classifier(settings.examples_file)
    telemetry = GenAiTelemetry(
        tracer_provider=service.tracer_provider,
        meter_provider=service.metrics.provider,
        capture_content=settings.capture_content,
        prices=settings.model_prices,
    )
    models = routing_models(nearest=nearest, observer=telemetry)
    runtime = Runtime(
        settings=settings,
        publisher=service.kafka.publisher(
            REQUESTS_ROUTED, WORKFLOW_PROGRESS, WORKFLOW_COMPLETED, AUDIT
        ),
        router=Router(
            models=models,
            min_confidence=settings.min_confidence,
            fallback=settings.fallback_workflow,
        ),
        policy=load_access_policy(settings.access_policy_file),
    )
    handlers.register(service.kafka, runtime)
    return service.app(runtime, resources=[partial(_warm_up, nearest, models)])


@asynccontextmanager
async def _warm_up(nearest: ExampleClassifier, models: ModelRouter) -> AsyncIterator[None]:
    """Build the routing chain's models (their providers' packages imported) and, when it
    uses the offline model, load the embeddings and embed the examples, before consuming,
    so the first request does not wait for them."""
    models.build_all(("routing",))
    if any(spec.offline for spec in models.config.role("routing").chain):
        await nearest.aclassify("warm-up")
        logger.info("routing: offline examples embedded")
    yield
