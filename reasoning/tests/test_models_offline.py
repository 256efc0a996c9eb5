"""The offline model through the same interfaces as a provider's, and the example classifier.

The classifier tests use the real all-MiniLM-L6-v2 embeddings (shipped in a PyPI package,
run on numpy), so they check what the mesh will actually do offline.
"""

from __future__ import annotations

import logging
from typing import Literal

import pytest
from langchain_core.embeddings import Embeddings
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from pactmesh_reasoning.classifier import ExampleClassifier, NoExamples
from pactmesh_reasoning.embeddings import load_embeddings
from pactmesh_reasoning.models import (
    OFFLINE_MODEL,
    CallCounters,
    ModelCounts,
    ModelRouter,
    ModelsConfig,
    ModelSpec,
    RoleConfig,
    answered_by,
    model_call_counts,
)
from pactmesh_reasoning.offline import OfflineChatModel
from pactmesh_reasoning.structured import structured_call
from pydantic import BaseModel, ConfigDict, Field

EXAMPLES = {
    "refund": ["I want my money back", "please refund my order", "charge me back for this"],
    "support_triage": ["how do I reset my password", "the app crashes when I log in"],
    "procurement": ["we need to buy 50 laptops", "order more office chairs from a supplier"],
    "supply_chain_reroute": ["the shipment is stuck at the port, reroute it"],
}


class Route(BaseModel):
    """The routing role's contract."""

    model_config = ConfigDict(extra="forbid")

    workflow: Literal["support_triage", "refund", "procurement", "supply_chain_reroute"]
    confidence: float = Field(ge=0, le=1)
    reason: str


class Refund(BaseModel):
    """An extraction contract."""

    model_config = ConfigDict(extra="forbid")

    order_id: str
    amount: float = Field(gt=0)
    customer_email: str | None = None
    reason: str


@pytest.fixture(scope="module")
def embeddings() -> Embeddings:
    return load_embeddings()


@pytest.fixture(scope="module")
def classifier(embeddings: Embeddings) -> ExampleClassifier:
    return ExampleClassifier(EXAMPLES, embeddings=embeddings)


def offline_router(model: OfflineChatModel | None = None) -> ModelRouter:
    return ModelRouter(
        ModelsConfig(),
        factory=lambda _spec: model or OfflineChatModel(),
        counters=CallCounters(),
    )


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("can I get reimbursed for this broken kettle?", "refund"),
        ("I forgot my password and cannot sign in", "support_triage"),
        ("purchase twenty monitors for the new team", "procurement"),
        ("our container is held at the harbour, send it another way", "supply_chain_reroute"),
    ],
)
async def test_the_classifier_labels_paraphrases_by_their_nearest_example(
    classifier: ExampleClassifier, text: str, label: str
) -> None:
    found = await classifier.aclassify(text)
    assert found.label == label, found.scores
    assert found.example in EXAMPLES[label]
    assert 0 < found.confidence <= 1
    assert found.similarity == max(found.scores.values())
    assert classifier.classify(text) == found  # sync and async agree


def test_the_classifier_chooses_among_the_labels_it_is_given(
    classifier: ExampleClassifier,
) -> None:
    found = classifier.classify("please refund my order", among={"procurement", "refund"})
    assert found.label == "refund"
    assert set(found.scores) == {"procurement", "refund"}
    restricted = classifier.classify("please refund my order", among={"procurement"})
    assert restricted.label == "procurement"
    assert restricted.confidence < found.confidence  # far from the only example allowed
    with pytest.raises(NoExamples):
        classifier.classify("anything", among={"unknown"})


def test_a_classifier_needs_examples_for_every_label(embeddings: Embeddings) -> None:
    with pytest.raises(NoExamples, match="refund"):
        ExampleClassifier({"refund": [], "other": ["x"]}, embeddings=embeddings)
    with pytest.raises(NoExamples):
        ExampleClassifier({}, embeddings=embeddings)


async def test_structured_output_by_keywords_when_no_classifier_is_given() -> None:
    result = await structured_call(
        "routing",
        schema=Route,
        prompt="I need a refund for order ORD-77",
        router=offline_router(),
    )
    assert result.status == "valid"
    assert result.value == Route(
        workflow="refund", confidence=0.5, reason="offline model: the text mentions refund"
    )
    assert result.model == OFFLINE_MODEL


async def test_structured_output_by_nearest_example_with_a_classifier(
    classifier: ExampleClassifier,
) -> None:
    router = offline_router(OfflineChatModel(classifier=classifier))
    result = await structured_call(
        "routing",
        schema=Route,
        prompt="our container is held at the harbour, send it another way",
        router=router,
    )
    assert result.value is not None
    assert result.value.workflow == "supply_chain_reroute"
    assert 0 < result.value.confidence <= 1
    assert "nearest example" in result.value.reason


async def test_extraction_fills_the_fields_it_finds_in_the_text() -> None:
    result = await structured_call(
        "extraction",
        schema=Refund,
        prompt="Please refund $1,200.50 for order ORD-4411, it arrived broken. ann@example.com",
        router=offline_router(),
    )
    assert result.value is not None
    assert (result.value.order_id, result.value.amount) == ("ORD-4411", 1200.5)
    assert result.value.customer_email == "ann@example.com"


async def test_extraction_with_nothing_to_find_goes_to_review() -> None:
    result = await structured_call(
        "extraction", schema=Refund, prompt="hello", router=offline_router()
    )
    assert result.status == "needs_review"  # no amount in the text: the stand-in invents none
    assert any("amount" in error for error in result.errors)


async def test_tool_calling_picks_the_tool_the_text_is_about() -> None:
    answer = await offline_router().ainvoke(
        "extraction", "refund order 4411, 30 dollars", tools=[Route, Refund], tool_choice="auto"
    )
    (call,) = answer.tool_calls
    assert call["name"] == "Refund"
    assert call["args"]["order_id"] == "4411"
    assert call["args"]["amount"] == 30.0
    assert answered_by(answer) == OFFLINE_MODEL


async def test_after_a_tool_result_the_model_answers_in_text() -> None:
    model = OfflineChatModel().bind_tools([Refund])
    answer = await model.ainvoke(
        [
            HumanMessage("refund order 4411"),
            AIMessage("", tool_calls=[{"name": "Refund", "args": {}, "id": "c1"}]),
            ToolMessage("Refund issued. Reference R-1.", tool_call_id="c1"),
        ]
    )
    assert answer.tool_calls == []
    assert "Refund issued" in answer.text


async def test_with_structured_output_works_as_for_any_provider() -> None:
    structured = OfflineChatModel().with_structured_output(Route)
    value = await structured.ainvoke("the procurement of chairs")
    assert isinstance(value, Route)
    assert value.workflow == "procurement"


async def test_streaming_yields_the_answer_word_by_word() -> None:
    router = offline_router()
    whole = await router.ainvoke("drafting", "My order is late. Where is it?")
    pieces = [piece async for piece in router.astream("drafting", "My order is late. Where is it?")]
    assert len(pieces) > 5
    assert "".join(pieces) == whole.text
    assert all(piece.startswith(" ") for piece in pieces[1:])


async def test_tool_calls_stream_in_one_chunk() -> None:
    model = OfflineChatModel().bind_tools([Refund], tool_choice="Refund")
    chunks = [c async for c in model.astream("refund $5 for order A-1")]
    merged = chunks[0]
    assert isinstance(merged, AIMessageChunk)
    for chunk in chunks[1:]:
        assert isinstance(chunk, AIMessageChunk)
        merged = merged + chunk
    assert merged.tool_calls[0]["args"]["amount"] == 5.0


async def test_the_offline_model_is_deterministic_and_names_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="pactmesh_reasoning.offline"):
        model = OfflineChatModel()
    assert "offline model pactmesh-offline:default in use" in caplog.text
    assert "not an LLM" in caplog.text
    first = await model.ainvoke("Write to the customer about the delay.")
    second = await model.ainvoke("Write to the customer about the delay.")
    assert first.text == second.text
    assert first.response_metadata["model_name"] == OFFLINE_MODEL
    assert model.invoke("Write to the customer about the delay.").text == first.text


def test_a_named_tool_that_is_not_offered_is_an_error() -> None:
    with pytest.raises(ValueError, match="not among the tools"):
        OfflineChatModel().bind_tools([Refund], tool_choice="Route").invoke("x")


def test_a_chain_can_be_invoked_synchronously() -> None:
    chain = offline_router().chat_for("drafting")
    answer = chain.invoke("The invoice is wrong.")
    assert answer.text.startswith('Thank you for your message about "The invoice is wrong"')
    assert answered_by(answer) == OFFLINE_MODEL


async def test_routers_count_calls_in_the_process_counters() -> None:
    before = model_call_counts().get(OFFLINE_MODEL, ModelCounts())
    router = ModelRouter(ModelsConfig(), factory=lambda _spec: OfflineChatModel())
    await router.ainvoke("drafting", "hello")
    after = model_call_counts()[OFFLINE_MODEL]
    assert (after.calls, after.answered) == (before.calls + 1, before.answered + 1)


async def test_the_offline_model_is_built_from_its_spec_without_init_chat_model() -> None:
    spec = ModelSpec(model="pactmesh-offline:drafts")
    router = ModelRouter(ModelsConfig(drafting=RoleConfig(primary=spec)), counters=CallCounters())
    model = router.model(spec)
    assert isinstance(model, OfflineChatModel)
    assert model.model_name == "pactmesh-offline:drafts"
    assert answered_by(await router.ainvoke("drafting", "hi")) == "pactmesh-offline:drafts"
