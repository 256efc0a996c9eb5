"""The keyword rules (the offline evidence, and the baseline on their own) and the field
extractor."""

from __future__ import annotations

from typing import Any

import pytest
from pactmesh_routing.domain.classifier import (
    classify,
    extract_fields,
    keyword_scores,
    matched_words,
)
from pactmesh_workflows.registry import registry

FALLBACK = "support-triage"
WORKFLOWS = registry().names


def _classify(text: str, requested: str | None = None, known: tuple[str, ...] = WORKFLOWS) -> Any:
    return classify(text=text, known_workflows=known, fallback=FALLBACK, requested=requested)


@pytest.mark.parametrize(
    ("text", "workflow"),
    [
        ("I was charged twice for order 4411, I want a refund", "refund"),
        ("The blender arrived broken, can I get my money back?", "refund"),
        ("Please raise a PO for 20 laptops from vendor Dell, $30,000", "procurement"),
        ("We need to purchase new office chairs under the existing contract", "procurement"),
        ("Shipment SH-77 is stuck at the port after a closure, reroute it", "supply-chain-reroute"),
        ("Find another route for our shipment, the carrier cancelled", "supply-chain-reroute"),
        ("How do I reset my password?", "support-triage"),
        ("Where is my order? I want to track it", "support-triage"),
    ],
)
def test_representative_texts_reach_their_workflow(text: str, workflow: str) -> None:
    decision = _classify(text)
    assert decision.workflow == workflow
    assert 0.0 < decision.confidence <= 1.0
    assert decision.reason.startswith("matched ")


def test_a_clear_winner_is_more_confident_than_a_close_call() -> None:
    clear = _classify("refund please, I want my money back for the defective item")
    close = _classify("I want a refund, the vendor sent the wrong purchase")
    assert (clear.workflow, clear.confidence) == ("refund", 1.0)
    # procurement 3.5 against refund 3: min(1, 3.5/4) * (3.5 - 3) / 3.5
    assert (close.workflow, close.confidence) == ("procurement", 0.125)


def test_reason_names_the_matched_patterns_and_scores() -> None:
    decision = _classify("How do I reset my password?")
    assert "password" in decision.reason
    assert "score 3" in decision.reason
    assert "runner-up 0" in decision.reason


def test_requested_workflow_is_honoured_when_registered() -> None:
    decision = _classify("How do I reset my password?", requested="procurement")
    assert (decision.workflow, decision.confidence) == ("procurement", 1.0)
    assert decision.reason == "requested by the submitter"


def test_unregistered_requested_workflow_is_ignored() -> None:
    decision = _classify("I want a refund for order 4411", requested="teleport")
    assert decision.workflow == "refund"
    assert decision.confidence < 1.0


def test_no_match_goes_to_the_fallback_with_zero_confidence() -> None:
    decision = _classify("Lorem ipsum dolor sit amet")
    assert (decision.workflow, decision.confidence) == (FALLBACK, 0.0)
    assert decision.reason == "no rule matched"


def test_no_match_names_an_unregistered_requested_workflow() -> None:
    decision = _classify("Lorem ipsum", requested="teleport")
    assert (decision.workflow, decision.confidence) == (FALLBACK, 0.0)
    assert "'teleport' is not registered" in decision.reason


def test_only_known_workflows_are_chosen() -> None:
    decision = _classify("I want a refund", known=("support-triage", "procurement"))
    assert decision.workflow == FALLBACK
    assert decision.confidence == 0.0


def test_decision_carries_the_extracted_fields() -> None:
    decision = _classify("refund $129.50 for order 4411", requested="refund")
    assert decision.fields == {"amount": 129.5, "order_id": "4411"}


def test_the_reason_quotes_the_words_that_matched() -> None:
    decision = _classify("The blender arrived broken, can I get my money back?")
    assert decision.reason == "matched 'money back', 'broken' (score 4.5, runner-up 0)"


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("Raise a PO for $30,000 with vendor Acme", {"amount": 30000.0, "vendor": "Acme"}),
        ("total of 1,250.75 USD", {"amount": 1250.75}),
        ("about 300 dollars", {"amount": 300.0}),
        ("€ 99", {"amount": 99.0}),
        ("Where is order 4411?", {"order_id": "4411"}),
        ("order #2002 arrived damaged", {"order_id": "2002"}),
        ("approve po-1042 please", {"po_number": "PO-1042"}),
        ("shipment sh-77 is stuck", {"shipment_id": "SH-77"}),
        (
            "PO-1042 for $5,000 covers order 4411 on SH-77",
            {"amount": 5000.0, "order_id": "4411", "po_number": "PO-1042", "shipment_id": "SH-77"},
        ),
        ("order 12 of 3 items, no money involved", {}),
        (
            "buy 40 laptops from Herman Miller Inc. for 50 euros",
            {"amount": 50.0, "vendor": "Herman Miller"},
        ),
        ("supplier: Brightline Catering, lunch for 20", {"vendor": "Brightline Catering"}),
        ("send it from the warehouse with care", {}),
    ],
)
def test_extract_fields(text: str, fields: dict[str, Any]) -> None:
    assert extract_fields(text) == fields


def test_a_vendor_is_extracted_only_for_procurement_or_an_unknown_workflow() -> None:
    text = "Shipment SH-77 from Rotterdam is stuck"
    assert extract_fields(text) == {"shipment_id": "SH-77", "vendor": "Rotterdam"}
    assert extract_fields(text, workflow="procurement")["vendor"] == "Rotterdam"
    assert extract_fields(text, workflow="supply-chain-reroute") == {"shipment_id": "SH-77"}


def test_keyword_scores_sum_the_weights_of_each_workflows_matching_patterns() -> None:
    scores = keyword_scores("I want a refund, the vendor sent the wrong purchase")
    assert set(scores) == set(registry())
    assert {w: s for w, s in scores.items() if s} == {"refund": 3.0, "procurement": 3.5}
    assert scores["supply-chain-reroute"] == scores["support-triage"] == 0.0
    assert keyword_scores("refund", workflows={"refund"}) == {"refund": 3.0}
    assert matched_words("Refund it, it is BROKEN", "refund") == ["'Refund'", "'BROKEN'"]
