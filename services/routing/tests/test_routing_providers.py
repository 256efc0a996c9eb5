"""With a provider configured (``PACTMESH_MODELS_JSON``), the provider's model routes,
through the real OpenAI client against the model simulator on 127.0.0.1: its answers are
checked, repaired once, sent to a person when still invalid, and the offline model takes
over when the provider fails."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from pactmesh_model_sim.app import create_app
from pactmesh_model_sim.protocol import ChatCompletionRequest, ToolDef
from pactmesh_model_sim.scenarios import FillScenario, Scenario
from pactmesh_model_sim.settings import Settings as SimSettings
from pactmesh_model_sim.testing import SimAdmin, serve_in_thread
from pactmesh_reasoning.classifier import ExampleClassifier
from pactmesh_reasoning.models import (
    OFFLINE_MODEL,
    CallCounters,
    ModelRouter,
    load_models_config,
)
from pactmesh_routing.adapters.models import chat_models
from pactmesh_routing.domain.router import INSTRUCTIONS, RAW_LIMIT, Router
from pactmesh_workflows.registry import registry

PROVIDER = "openai:sim-routing"
TEXT = "I want a refund for order 4411, the headphones arrived broken"
ANSWER = {
    "workflow": "refund",
    "confidence": 0.87,
    "reason": "the customer wants money back for a broken item",
    "fields": {"order_id": "4411"},
}


class RoutingScenario:
    """A provider's model that always gives ``ANSWER``."""

    def text(self, request: ChatCompletionRequest) -> str:
        return json.dumps(ANSWER)

    def arguments(self, request: ChatCompletionRequest, tool: ToolDef) -> dict[str, Any]:
        return dict(ANSWER)

    def json_object(self, request: ChatCompletionRequest, schema: dict[str, Any]) -> Any:
        return dict(ANSWER)


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    scenarios: dict[str, Scenario] = {"fill": FillScenario(), "routing": RoutingScenario()}
    with serve_in_thread(create_app(SimSettings(), scenarios=scenarios)) as url:
        yield url


@pytest.fixture
def sim(sim_url: str) -> Iterator[SimAdmin]:
    admin = SimAdmin(sim_url)
    admin.reset()
    admin.configure(scenario="routing")
    yield admin
    admin.close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def _router(
    sim: SimAdmin, http: httpx.AsyncClient, nearest: ExampleClassifier, *, fallback: bool = True
) -> Router:
    primary = {
        "model": PROVIDER,
        "base_url": sim.openai_base_url,
        "api_key": "sk-sim-test",
        "latency_budget_s": 5,
    }
    routing: dict[str, Any] = {"primary": primary}
    if fallback:
        routing["fallbacks"] = [{"model": OFFLINE_MODEL}]
    config = load_models_config({"PACTMESH_MODELS_JSON": json.dumps({"routing": routing})})
    models = ModelRouter(
        config, factory=chat_models(nearest, http_async_client=http), counters=CallCounters()
    )
    return Router(models=models, min_confidence=0.5)


@pytest.fixture
def router(sim: SimAdmin, http: httpx.AsyncClient, nearest: ExampleClassifier) -> Router:
    return _router(sim, http, nearest)


async def test_the_configured_provider_routes(sim: SimAdmin, router: Router) -> None:
    decision = await router.route(text=TEXT)

    assert (decision.workflow, decision.confidence) == ("refund", 0.87)
    assert decision.fields == {"order_id": "4411"}
    assert decision.model == PROVIDER
    assert decision.reason == f"{PROVIDER}: the customer wants money back for a broken item"
    [request] = sim.requests()
    body = request["body"]
    system, user = body["messages"]
    assert (system["role"], system["content"]) == ("system", INSTRUCTIONS)
    assert (user["role"], user["content"]) == ("user", TEXT)  # the request, verbatim
    [tool] = body["tools"]
    assert tool["function"]["name"] == "RoutingDecision"
    workflow = tool["function"]["parameters"]["properties"]["workflow"]
    assert set(workflow["enum"]) == set(registry())
    assert {"support-triage", "procurement", "supply-chain-reroute", "refund"} <= set(
        workflow["enum"]
    )


@pytest.mark.parametrize(
    ("text", "workflow", "fields"),
    [
        ("How do I reset my password?", "support-triage", {}),
        (
            "I want a refund of $30 for order 4411, it arrived broken",
            "refund",
            {"order_id": "4411", "amount": 30.0},
        ),
    ],
)
async def test_the_simulators_default_scenario_routes_as_the_offline_model(
    sim: SimAdmin, router: Router, text: str, workflow: str, fields: dict[str, Any]
) -> None:
    sim.configure()  # no scenario named: the simulator's default, "offline"
    decision = await router.route(text=text)
    assert (decision.workflow, decision.human_triage) == (workflow, False)
    assert decision.fields == fields
    assert decision.model == PROVIDER, "the provider answered validly, no fallback"
    assert sim.stats()["by_outcome"] == {"ok": 1}, "valid at the first attempt"


async def test_a_rejected_answer_is_repaired_once(sim: SimAdmin, router: Router) -> None:
    sim.configure(scenario="routing", fail_next=["hallucinated_field"])
    decision = await router.route(text=TEXT)
    assert (decision.workflow, decision.human_triage) == ("refund", False)
    assert decision.reason.startswith(f"{PROVIDER} after one repair: ")


async def test_two_invalid_answers_go_to_a_person_with_the_raw_output(
    sim: SimAdmin, router: Router
) -> None:
    # The fill scenario copies the text into every string: "fields.order_id" is not digits.
    sim.configure(scenario="fill")
    text = f"{TEXT}. " + "It was a present and I am really disappointed about it. " * 4

    decision = await router.route(text=text)

    assert (decision.workflow, decision.confidence) == ("support-triage", 0.0)
    assert decision.human_triage
    assert decision.model == PROVIDER
    assert decision.fields == {"order_id": "4411"}  # the extractor still fills them
    assert decision.reason.startswith(f"{PROVIDER} answered invalidly twice (attempt 1: ")
    assert "fields.order_id: " in decision.reason
    raw = decision.reason.split("raw output ", 1)[1]
    assert raw.startswith("'{")
    assert "…" in raw
    assert len(raw) < RAW_LIMIT + 80
    assert decision.reason.endswith(": human triage (needs review)")
    assert len(sim.requests()) == 2


async def test_a_failing_provider_hands_over_to_the_offline_model(
    sim: SimAdmin, router: Router
) -> None:
    sim.configure(scenario="routing", rate_5xx=1.0)
    decision = await router.route(text=TEXT)
    assert (decision.workflow, decision.model) == ("refund", OFFLINE_MODEL)
    assert decision.reason.startswith(f"{OFFLINE_MODEL}: nearest example is refund")


async def test_with_no_model_answering_a_person_triages(
    sim: SimAdmin, http: httpx.AsyncClient, nearest: ExampleClassifier
) -> None:
    sim.configure(scenario="routing", rate_5xx=1.0)
    router = _router(sim, http, nearest, fallback=False)
    decision = await router.route(text=TEXT)
    assert (decision.workflow, decision.confidence, decision.human_triage) == (
        "support-triage",
        0.0,
        True,
    )
    assert decision.reason == f"no model answered for routing: tried {PROVIDER}: human triage"
    assert decision.fields == {"order_id": "4411"}
