"""Routing's offline model: answers ``RoutingDecision`` through the same tool call,
strict parsing and business rules as a provider's model, with routing's evidence."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pactmesh_reasoning.classifier import ExampleClassifier
from pactmesh_reasoning.models import OFFLINE_MODEL, ModelRouter, ModelSpec
from pactmesh_reasoning.structured import structured_call
from pactmesh_routing.adapters.models import RoutingOfflineModel, chat_models, load_classifier
from pactmesh_routing.domain.errors import InvalidExamples
from pactmesh_routing.domain.schema import RoutingDecision
from pactmesh_workflows.registry import registry
from pydantic import BaseModel, ConfigDict

REQUEST = "Shipment SH-5012 is stuck in Hamburg because of the port strike, reroute it"


async def test_the_offline_model_answers_through_structured_call(
    offline_models: ModelRouter,
) -> None:
    result = await structured_call(
        "routing", schema=RoutingDecision, prompt=REQUEST, router=offline_models
    )
    assert (result.status, result.model) == ("valid", OFFLINE_MODEL)
    assert result.value is not None
    assert result.value.workflow == "supply-chain-reroute"
    assert result.value.confidence > 0.9
    assert result.value.field_values() == {"shipment_id": "SH-5012"}
    assert "nearest example is supply-chain-reroute" in result.value.reason
    assert "'reroute', 'Shipment', 'stuck'" in result.value.reason


async def test_sync_and_async_answers_agree(nearest: ExampleClassifier) -> None:
    model = RoutingOfflineModel(nearest=nearest).bind_tools(
        [RoutingDecision], tool_choice="RoutingDecision"
    )
    asynchronous = await model.ainvoke([HumanMessage(REQUEST)])
    synchronous = model.invoke([HumanMessage(REQUEST)])
    assert isinstance(asynchronous, AIMessage)
    assert isinstance(synchronous, AIMessage)
    assert asynchronous.tool_calls[0]["args"] == synchronous.tool_calls[0]["args"]


async def test_a_repair_request_is_not_taken_for_the_request(nearest: ExampleClassifier) -> None:
    model = RoutingOfflineModel(nearest=nearest).bind_tools(
        [RoutingDecision], tool_choice="RoutingDecision"
    )
    conversation = [SystemMessage("route it"), HumanMessage(REQUEST)]
    first = await model.ainvoke(conversation)
    again = await model.ainvoke([*conversation, first, HumanMessage("Fix: refund, please.")])
    assert isinstance(first, AIMessage)
    assert isinstance(again, AIMessage)
    assert again.tool_calls[0]["args"] == first.tool_calls[0]["args"]


class Note(BaseModel):
    """A note about a request."""

    model_config = ConfigDict(extra="forbid")

    summary: str


async def test_other_calls_get_the_kits_offline_answer(nearest: ExampleClassifier) -> None:
    model = RoutingOfflineModel(nearest=nearest)
    note = await model.bind_tools([Note], tool_choice="Note").ainvoke([HumanMessage(REQUEST)])
    assert isinstance(note, AIMessage)
    assert note.tool_calls[0]["args"] == {"summary": REQUEST}
    text = await model.ainvoke([HumanMessage("Thanks for the help.")])
    assert text.text.startswith('Thank you for your message about "Thanks for the help"')


def test_the_offline_spec_builds_routings_offline_model(nearest: ExampleClassifier) -> None:
    model = chat_models(nearest)(ModelSpec(model="pactmesh-offline:routing"))
    assert isinstance(model, RoutingOfflineModel)
    assert (model.model_name, model.nearest) == ("pactmesh-offline:routing", nearest)


def test_the_packaged_examples_cover_every_workflow(nearest: ExampleClassifier) -> None:
    assert set(nearest.labels) == set(registry())
    assert {"support-triage", "procurement", "supply-chain-reroute", "refund"} <= set(
        nearest.labels
    )


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ('{"text": "refund me", "workflow": "refund"}', "missing ["),
        ('{"text": "beam me up", "workflow": "teleport"}', "unknown ['teleport']"),
    ],
)
def test_examples_must_label_exactly_the_registered_workflows(
    tmp_path: Path, lines: str, problem: str
) -> None:
    path = tmp_path / "examples.jsonl"
    path.write_text(lines + "\n", encoding="utf-8")
    with pytest.raises(InvalidExamples, match=problem.replace("[", r"\[")):
        load_classifier(path)
