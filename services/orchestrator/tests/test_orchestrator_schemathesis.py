"""The orchestrator's API (workflows, runs, cache counters) against its own OpenAPI
document, with a token of each role, over a real engine holding one run of the token's
tenant paused at a tool call: no 5xx, every answer documented."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from langgraph.checkpoint.memory import InMemorySaver
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import RequestRouted
from pactmesh_kit.auth import load_access_policy
from pactmesh_kit.testing_openapi import (
    ROLES,
    call_as,
    conformance_schema,
    conformance_settings,
    without_lifespan,
)
from pactmesh_orchestrator.app import create_app
from pactmesh_orchestrator.domain.engine import Engine
from pactmesh_orchestrator.domain.workflows import build_graphs
from pactmesh_orchestrator.runtime import Runtime
from pactmesh_orchestrator.settings import Settings
from pactmesh_orchestrator.testing import CollectingPublisher, MemoryOutbox
from pactmesh_workflows.gates import GatePolicy

RUN = uuid.UUID(int=7)

schema = conformance_schema(create_app, Settings)


@schema.hook("flatmap_path_parameters")
def the_seeded_run(_: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Most generated ids name no run (404): aim half the cases at the seeded one, so
    that its 200 is checked against the document too."""
    if not path_parameters or "workflow_id" not in path_parameters:
        return st.just(path_parameters)
    return st.one_of(
        st.just({**path_parameters, "workflow_id": str(RUN)}), st.just(path_parameters)
    )


@pytest.fixture(scope="module")
def engine() -> Engine:
    """An engine with one support-triage run of tenant acme, waiting for its first tool
    (read only by the API, so one serves every case)."""
    saver = InMemorySaver()
    engine = Engine(
        graphs=build_graphs(checkpointer=saver, gates=GatePolicy.load()),
        checkpointer=saver,
        publisher=CollectingPublisher(),
        outbox=MemoryOutbox(),
        reviewers=load_access_policy(),
        tool_timeout_s=10.0,
    )
    routed = new_event(
        RequestRouted(workflow="support-triage", confidence=0.9, reason="t", text="Reset?"),
        workflow_id=RUN,
        tenant="acme",
        principal=Principal(subject="user-1"),
    )
    asyncio.run(engine.start(Envelope[RequestRouted].model_validate(routed.model_dump())))
    return engine


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, cache_enabled=False)


@pytest.fixture
def orchestrator_app(settings: Settings, engine: Engine) -> Any:
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    runtime.engine = engine
    return without_lifespan(app)


@pytest.mark.parametrize("role", ROLES)
@schema.parametrize()
@conformance_settings(max_examples=10)
def test_the_orchestrator_api_answers_as_its_openapi_says(
    case: Any, orchestrator_app: Any, settings: Settings, role: str
) -> None:
    call_as(case, orchestrator_app, settings, role)
