"""Fixtures: routing's offline model over the real MiniLM embeddings (on numpy, offline),
so the tests check what the service does with no provider configured."""

from __future__ import annotations

import pytest
from pactmesh_reasoning.classifier import ExampleClassifier
from pactmesh_reasoning.models import CallCounters, ModelRouter, ModelsConfig
from pactmesh_routing.adapters.models import chat_models, load_classifier
from pactmesh_routing.domain.router import Router

MIN_CONFIDENCE = 0.5


@pytest.fixture(scope="session")
def nearest() -> ExampleClassifier:
    """The classifier over the packaged examples (embedded once per test session)."""
    return load_classifier()


@pytest.fixture
def offline_models(nearest: ExampleClassifier) -> ModelRouter:
    """Every role on routing's offline model, whatever the environment configures."""
    return ModelRouter(ModelsConfig(), factory=chat_models(nearest), counters=CallCounters())


@pytest.fixture
def router(offline_models: ModelRouter) -> Router:
    """The router as the service builds it with no provider configured."""
    return Router(models=offline_models, min_confidence=MIN_CONFIDENCE)
