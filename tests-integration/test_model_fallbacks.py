"""The drafting role's fallback chain on the real mesh, through langchain-openai to the
model simulator: a slow, rate-limited or failing primary hands the call to the next
model, and the result records which model answered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pactmesh_harness.mesh import MODEL_SIM, Broker, Mesh, running_mesh, wait_for
from pactmesh_harness.workflow_client import finished, run, status, submit, wait_status


def _spec(model: str, budget_s: float) -> dict[str, Any]:
    return {
        "model": f"openai:{model}",
        "base_url": "{model_sim_url}/v1",
        "api_key": "sk-simulator",
        "latency_budget_s": budget_s,
    }


MODELS = {
    "routing": {"primary": _spec("sim-router", 5.0), "fallbacks": []},
    "drafting": {
        "primary": _spec("sim-primary", 2.0),  # headroom for a loaded machine; "slow" is 4 s
        "fallbacks": [_spec("sim-secondary", 5.0), {"model": "pactmesh-offline:default"}],
    },
}
QUESTIONS = {
    "healthy": "How do I reset my password?",
    "slow": "How can I update my billing details?",
    "rate_limited": "How do I change the delivery address?",
    "failing": "How do I cancel my subscription plan?",
    "all_down": "How do I track an order?",
}


@pytest.fixture(scope="module")
def mesh(broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    env = {
        "PACTMESH_MODELS_JSON": json.dumps(MODELS),
        "PACTMESH_ORCHESTRATOR_CACHE_ENABLED": "false",  # every question must reach drafting
    }
    with running_mesh(broker, tmp_path_factory.mktemp("models"), env=env, model_sim=True) as m:
        yield m


def _configure(mesh: Mesh, model: str, **config: Any) -> None:
    response = httpx.put(
        f"{mesh.url(MODEL_SIM)}/sim/config/models/{model}", json=config, timeout=10
    )
    assert response.status_code == 204, response.text


@pytest.fixture(autouse=True)
def _reset(mesh: Mesh) -> Iterator[None]:
    yield
    for model in ("sim-primary", "sim-secondary", "sim-router"):
        httpx.delete(f"{mesh.url(MODEL_SIM)}/sim/config/models/{model}", timeout=10)


def _drafted_by(mesh: Mesh, question: str) -> dict[str, Any]:
    output = finished(mesh, submit(mesh, question, workflow="support-triage"))["output"]
    assert output["source"] == "knowledge_base"
    return dict(output)


def test_a_healthy_primary_answers(mesh: Mesh) -> None:
    output = _drafted_by(mesh, QUESTIONS["healthy"])
    assert output["drafted_by"] == "openai:sim-primary"
    assert output["reply"]


def test_a_primary_over_its_latency_budget_hands_over(mesh: Mesh) -> None:
    _configure(mesh, "sim-primary", latency={"kind": "fixed", "ms": 4000})
    assert _drafted_by(mesh, QUESTIONS["slow"])["drafted_by"] == "openai:sim-secondary"


def test_a_rate_limited_primary_hands_over_when_retry_after_exceeds_the_budget(mesh: Mesh) -> None:
    _configure(mesh, "sim-primary", rate_429=1.0, retry_after_s=30)
    assert _drafted_by(mesh, QUESTIONS["rate_limited"])["drafted_by"] == "openai:sim-secondary"


def test_a_failing_primary_hands_over(mesh: Mesh) -> None:
    _configure(mesh, "sim-primary", rate_5xx=1.0)
    assert _drafted_by(mesh, QUESTIONS["failing"])["drafted_by"] == "openai:sim-secondary"


def test_with_every_provider_down_the_offline_model_answers(mesh: Mesh) -> None:
    _configure(mesh, "sim-primary", rate_5xx=1.0)
    _configure(mesh, "sim-secondary", rate_5xx=1.0)
    assert _drafted_by(mesh, QUESTIONS["all_down"])["drafted_by"] == "pactmesh-offline:default"


def _routed(mesh: Mesh, text: str, scopes: tuple[str, ...] = ()) -> str:
    rid = submit(mesh, text, scopes=scopes)  # no workflow named: routing asks the simulator

    def detail() -> str | None:
        view = status(mesh, rid, missing_ok=True)
        return next((h["detail"] for h in view.get("history", ()) if h["status"] == "routed"), None)

    return wait_for(detail, timeout=60, interval=0.2, what=f"{rid} routed")


def test_the_simulator_by_default_routes_as_the_offline_model(mesh: Mesh) -> None:
    # As `PACTMESH_MODEL_SIM=1 make run` does: routing asks the simulator, no fallback.
    password = _routed(mesh, "How do I reset my password?")
    refund = _routed(
        mesh, "I want a refund of $30 for order 4411, it arrived broken", ("workflow:refund",)
    )
    for detail, workflow in ((password, "support-triage"), (refund, "refund")):
        assert workflow in detail
        assert "human triage" not in detail
        assert "openai:sim-router" in detail, "the simulator answered, validly"


def test_a_malformed_routing_answer_is_escalated_and_never_acted_on(mesh: Mesh) -> None:
    _configure(mesh, "sim-router", malformed_rate=1.0, malformed_kinds={"hallucinated_field": 1.0})
    rid = submit(mesh, "How do I update my billing details?")  # no workflow named: routing asks
    view = wait_status(mesh, rid, "waiting_for_review")
    routed = [h["detail"] for h in view["history"] if h["status"] == "routed"]
    assert routed
    assert "human triage" in routed[0]
    assert "invalid" in routed[0]
    values = run(mesh, rid)["values"]
    assert values["needs_human"] is True
    assert values["fields"] == {}, "nothing the model invented reached the workflow"
    assert "outcome" not in values, "no result: a person decides"
    stats = httpx.get(f"{mesh.url(MODEL_SIM)}/sim/stats", timeout=10).json()
    assert stats["by_model"]["sim-router"]["hallucinated_field"] == 2, "one repair, then review"
