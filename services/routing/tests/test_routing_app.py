"""Routing's settings and app factory."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI
from langchain_core.embeddings import DeterministicFakeEmbedding
from pactmesh_reasoning.classifier import ExampleClassifier
from pactmesh_reasoning.models import ModelRouter, ModelsConfig, ModelSpec, RoleConfig
from pactmesh_routing.app import _warm_up, create_app
from pactmesh_routing.domain.errors import InvalidExamples
from pactmesh_routing.settings import Settings
from pydantic import ValidationError


def test_the_threshold_and_examples_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PACTMESH_ROUTING_MIN_CONFIDENCE", raising=False)
    monkeypatch.delenv("PACTMESH_ROUTING_EXAMPLES_FILE", raising=False)
    assert (Settings().min_confidence, Settings().examples_file) == (0.5, None)
    assert Settings().fallback_workflow == "support-triage"
    monkeypatch.setenv("PACTMESH_ROUTING_MIN_CONFIDENCE", "0.7")
    monkeypatch.setenv("PACTMESH_ROUTING_EXAMPLES_FILE", str(tmp_path / "examples.jsonl"))
    settings = Settings()
    assert (settings.min_confidence, settings.examples_file) == (0.7, tmp_path / "examples.jsonl")
    monkeypatch.setenv("PACTMESH_ROUTING_MIN_CONFIDENCE", "1.5")
    with pytest.raises(ValidationError, match="min_confidence"):
        Settings()


def test_the_app_is_built_from_settings(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, topic_prefix="routing-app-test."))
    assert isinstance(app, FastAPI)


def test_an_unusable_examples_file_stops_the_service_at_start(tmp_path: Path) -> None:
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"text": "refund me", "workflow": "refund"}\n', encoding="utf-8")
    with pytest.raises(InvalidExamples, match="missing"):
        create_app(Settings(data_dir=tmp_path, examples_file=examples))


class CountingEmbeddings(DeterministicFakeEmbedding):
    calls: int = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return super().embed_documents(texts)


@pytest.mark.parametrize(("model", "warmed"), [("pactmesh-offline:default", 1), ("openai:x", 0)])
async def test_the_examples_are_embedded_before_consuming_when_the_offline_model_routes(
    model: str, warmed: int
) -> None:
    embeddings = CountingEmbeddings(size=8)
    nearest = ExampleClassifier({"refund": ["refund me"]}, embeddings=embeddings)
    models = ModelRouter(ModelsConfig(routing=RoleConfig(primary=ModelSpec(model=model))))
    async with _warm_up(nearest, models):
        assert embeddings.calls == warmed
