"""``structured_call``: strict parsing, business rules, one repair, then human review.

Against the model simulator through langchain-openai (the real client path), and the
same calls against the offline model, which must not be told apart.
"""

from __future__ import annotations

import json
from typing import Literal

import httpx
import pytest
from pactmesh_model_sim.testing import SimAdmin
from pactmesh_reasoning.models import (
    OFFLINE_MODEL,
    CallCounters,
    ModelRouter,
    ModelsConfig,
    ModelSpec,
    RoleConfig,
    build_chat_model,
)
from pactmesh_reasoning.structured import SchemaNotStrict, StructuredResult, structured_call
from pydantic import BaseModel, ConfigDict, Field

PROMPT = "Refund 120.50 USD for order ORD-4411: the parcel arrived damaged."


class RefundRequest(BaseModel):
    """What the extraction role turns a refund request into."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    order_id: str
    amount: float
    currency: Literal["USD", "EUR"]
    reason: str


def amount_in_range(value: RefundRequest) -> list[str]:
    """The business rule: refunds are positive and at most 5,000."""
    if 0 < value.amount <= 5000:
        return []
    return [f"amount: {value.amount} is outside the allowed range (0, 5000]"]


@pytest.fixture
def simulated(sim: SimAdmin, http: httpx.AsyncClient) -> ModelRouter:
    primary = ModelSpec(
        model="openai:sim-extract",
        base_url=sim.openai_base_url,
        api_key="sk-sim-test",
    )
    role = RoleConfig(primary=primary)
    return ModelRouter(
        ModelsConfig(routing=role, extraction=role, drafting=role),
        factory=lambda spec: build_chat_model(spec, http_async_client=http),
        counters=CallCounters(),
    )


async def extract(router: ModelRouter) -> StructuredResult[RefundRequest]:
    return await structured_call(
        "extraction",
        schema=RefundRequest,
        prompt=PROMPT,
        validators=[amount_in_range],
        router=router,
    )


async def test_a_valid_first_answer(simulated: ModelRouter) -> None:
    result = await structured_call(
        "extraction",
        schema=RefundRequest,
        prompt=PROMPT,
        validators=[amount_in_range],
        router=simulated,
    )
    assert result.status == "valid"
    assert result.value is not None
    assert (result.value.amount, result.value.currency) == (120.5, "USD")
    assert result.model == "openai:sim-extract"
    assert len(result.raw) == 1
    assert json.loads(result.raw[0])["amount"] == 120.5
    assert result.errors == []


async def test_a_hallucinated_field_is_repaired_with_the_errors_sent_back(
    sim: SimAdmin, simulated: ModelRouter
) -> None:
    sim.configure(fail_next=["hallucinated_field"])
    result = await structured_call(
        "extraction", schema=RefundRequest, prompt=PROMPT, router=simulated
    )
    assert result.status == "repaired"
    assert result.value is not None
    assert len(result.raw) == 2
    first_errors = result.attempts[0].errors
    assert any("not a field of the schema" in error for error in first_errors), first_errors
    assert result.attempts[1].errors == ()
    first, repair = sim.requests()
    assert first["outcome"] == "hallucinated_field"
    last_message = repair["body"]["messages"][-1]
    assert last_message["role"] == "user"
    for error in first_errors:
        assert error in last_message["content"]
    assert result.raw[0] in last_message["content"]  # the model sees what it sent


async def test_an_amount_out_of_range_is_caught_by_the_business_rule(
    sim: SimAdmin, simulated: ModelRouter
) -> None:
    sim.configure(fail_next=["out_of_range"])
    result = await structured_call(
        "extraction",
        schema=RefundRequest,
        prompt=PROMPT,
        validators=[amount_in_range],
        router=simulated,
    )
    assert result.status == "repaired"
    assert result.value is not None
    assert result.value.amount == 120.5
    (error,) = result.attempts[0].errors
    assert "outside the allowed range" in error
    assert "outside the allowed range" in sim.requests()[1]["body"]["messages"][-1]["content"]


async def test_two_failures_go_to_review_with_both_raw_answers(
    sim: SimAdmin, simulated: ModelRouter
) -> None:
    sim.configure(fail_next=["hallucinated_field", "out_of_range"])
    result = await structured_call(
        "extraction",
        schema=RefundRequest,
        prompt=PROMPT,
        validators=[amount_in_range],
        router=simulated,
    )
    assert result.status == "needs_review"
    assert result.value is None
    assert len(result.raw) == 2
    second = json.loads(result.raw[1])
    assert second["amount"] in (12050.0, -121.5)
    assert {e.split(":")[0] for e in result.errors} == {"attempt 1", "attempt 2"}
    assert sim.stats()["requests"] == 2  # one repair, never a third try


@pytest.mark.parametrize(
    "kind", ["invalid_json", "hallucinated_field", "out_of_range", "unknown_tool"]
)
async def test_a_malformed_answer_never_returns_a_value(
    sim: SimAdmin, simulated: ModelRouter, kind: str
) -> None:
    sim.configure(fail_next=[kind, kind])
    result = await structured_call(
        "extraction",
        schema=RefundRequest,
        prompt=PROMPT,
        validators=[amount_in_range],
        router=simulated,
    )
    assert result.status == "needs_review"
    assert result.value is None
    assert all(attempt.errors for attempt in result.attempts)
    assert all(raw for raw in result.raw)


async def test_under_random_malformed_answers_only_clean_answers_are_accepted(
    sim: SimAdmin, simulated: ModelRouter
) -> None:
    sim.configure(malformed_rate=0.5, seed=11)
    results = [await extract(simulated) for _ in range(30)]
    outcomes = [entry["outcome"] for entry in sim.requests()]
    accepted = [r for r in results if r.status != "needs_review"]
    assert len(accepted) == outcomes.count("ok")  # every clean answer, and only those
    assert {r.status for r in results} == {"valid", "repaired", "needs_review"}
    for result in accepted:
        assert result.value is not None
        assert amount_in_range(result.value) == []
        # The value is the accepted raw answer exactly: nothing dropped, nothing renamed.
        assert json.loads(result.raw[-1]) == result.value.model_dump()
    for result in results:
        if result.status == "needs_review":
            assert result.value is None
            assert len(result.raw) == 2


async def test_a_schema_that_would_drop_unknown_fields_is_refused(
    simulated: ModelRouter,
) -> None:
    class Loose(BaseModel):
        amount: float

    class Nested(BaseModel):
        model_config = ConfigDict(extra="forbid")
        refund: Loose

    for schema in (Loose, Nested):
        with pytest.raises(SchemaNotStrict, match="extra='forbid'"):
            await structured_call("extraction", schema=schema, prompt=PROMPT, router=simulated)


async def test_a_prompt_or_messages_exactly(simulated: ModelRouter) -> None:
    with pytest.raises(TypeError, match="exactly one"):
        await structured_call("extraction", schema=RefundRequest, router=simulated)


class Routing(BaseModel):
    """The routing role's contract."""

    model_config = ConfigDict(extra="forbid")

    workflow: Literal["support_triage", "refund", "procurement"]
    confidence: float = Field(ge=0, le=1)
    reason: str


@pytest.mark.parametrize("backend", ["simulator", "offline"])
async def test_the_same_call_runs_on_a_provider_or_offline(
    backend: str, sim: SimAdmin, simulated: ModelRouter
) -> None:
    router = simulated if backend == "simulator" else ModelRouter(ModelsConfig())
    result = await structured_call(
        "routing",
        schema=Routing,
        prompt="I want a refund for my broken kettle",
        validators=[lambda r: [] if r.workflow == "refund" else ["wrong workflow"]],
        router=router,
    )
    assert result.status == "valid"
    assert result.value is not None
    assert result.value.workflow == "refund"
    expected = "openai:sim-extract" if backend == "simulator" else OFFLINE_MODEL
    assert result.model == expected
