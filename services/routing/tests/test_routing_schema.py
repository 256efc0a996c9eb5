"""The routing contract a model fills, and the business rules on its answers."""

from __future__ import annotations

import re
from typing import Any, get_args

import pytest
from pactmesh_reasoning.structured import require_strict
from pactmesh_routing.domain.router import instructions
from pactmesh_routing.domain.schema import (
    RegisteredWorkflow,
    RoutingDecision,
    business_rules,
    decision_model,
)
from pactmesh_workflows.definition import Routing, WorkflowDefinition
from pactmesh_workflows.fields import IdentifierField
from pactmesh_workflows.registry import Registry, registry
from pydantic import BaseModel, ValidationError

WORKFLOWS = registry().names

TEXT = "Refund order 4411 ($30), PO-1042, shipment SH-77"


def _decision(**fields: Any) -> RoutingDecision:
    return RoutingDecision.model_validate(
        {"workflow": "refund", "confidence": 0.9, "reason": "money back", "fields": fields}
    )


def _errors(decision: RoutingDecision, workflows: tuple[str, ...] = WORKFLOWS) -> list[str]:
    return [e for rule in business_rules(text=TEXT, workflows=workflows) for e in rule(decision)]


def test_the_workflow_options_are_the_registered_workflows() -> None:
    assert set(get_args(RegisteredWorkflow)) == set(WORKFLOWS)
    schema = RoutingDecision.model_json_schema()
    assert set(schema["properties"]["workflow"]["enum"]) == set(WORKFLOWS)
    assert "refund: money back" in schema["properties"]["workflow"]["description"]


def test_the_contract_is_strict_so_no_invented_field_is_dropped() -> None:
    require_strict(RoutingDecision)  # raises SchemaNotStrict otherwise
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        _decision(customer="Ann")
    with pytest.raises(ValidationError):
        RoutingDecision.model_validate(
            {"workflow": "refund", "confidence": 0.9, "reason": "x", "urgency": "high"}
        )
    with pytest.raises(ValidationError):
        RoutingDecision.model_validate({"workflow": "teleport", "confidence": 0.9, "reason": "x"})
    with pytest.raises(ValidationError):
        RoutingDecision.model_validate({"workflow": "refund", "confidence": 1.5, "reason": "x"})


def test_a_well_formed_answer_passes_every_rule() -> None:
    decision = _decision(amount=30, order_id="4411", po_number="PO-1042", shipment_id="SH-77")
    assert _errors(decision) == []
    assert decision.field_values() == {
        "amount": 30.0,
        "order_id": "4411",
        "po_number": "PO-1042",
        "shipment_id": "SH-77",
    }


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"amount": 0}, "fields.amount: 0.0 is not between 0 and 100,000,000"),
        ({"amount": -30}, "fields.amount: -30.0 is not between"),
        ({"amount": 3e9}, "fields.amount: 3000000000.0 is not between"),
        ({"amount": float("nan")}, "fields.amount: nan is not between"),
        ({"order_id": "ORD-4411"}, "fields.order_id: 'ORD-4411' is not like '4411'"),
        ({"order_id": "9999"}, "fields.order_id: '9999' does not occur in the request"),
        ({"po_number": "1042"}, "fields.po_number: '1042' is not like 'PO-1042'"),
        ({"shipment_id": "SH-78"}, "fields.shipment_id: 'SH-78' does not occur in the request"),
        ({"shipment_id": "77"}, "fields.shipment_id: '77' is not like 'SH-77'"),
        ({"vendor": "   "}, "fields.vendor: must be a name of 1 to 120 characters"),
    ],
)
def test_business_rules_name_what_is_wrong(fields: dict[str, Any], error: str) -> None:
    [found] = _errors(_decision(**fields))
    assert found.startswith(error), found


def test_a_workflow_outside_the_routers_set_is_refused() -> None:
    [found] = _errors(_decision(), workflows=("support-triage", "procurement"))
    assert found == "workflow: 'refund' is not one of support-triage, procurement"


def test_a_new_workflow_reaches_the_schema_and_the_prompt_without_routing_code() -> None:
    serial = IdentifierField(
        "serial_number",
        "A product's serial number such as SN-2231.",
        "serial numbers as written",
        re.compile(r"\b(SN-\d+)\b"),
        pattern=re.compile(r"^SN-\d+$"),
        example="SN-2231",
    )
    warranty = WorkflowDefinition(
        name="warranty-claim",
        description="A repair under warranty.",
        package="pactmesh_workflows.refund",
        input_model=BaseModel,
        output_model=BaseModel,
        actions=(),
        tools=(),
        routing=Routing(
            description="a repair or replacement under a product's warranty",
            examples=("My toaster SN-1 broke within the warranty period",),
            keywords=((r"\bwarranty\b", 3.0),),
            fields=(serial,),
        ),
    )
    workflows = Registry([*registry().values(), warranty])

    schema = decision_model(workflows).model_json_schema()
    assert "warranty-claim" in schema["properties"]["workflow"]["enum"]
    assert (
        "warranty-claim: a repair or replacement" in schema["properties"]["workflow"]["description"]
    )
    fields = schema["$defs"]["RoutingFields"]["properties"]
    assert fields["serial_number"]["description"] == "A product's serial number such as SN-2231."
    prompt = instructions(workflows)
    assert "- warranty-claim: a repair or replacement under a product's warranty;" in prompt
    assert "serial numbers as written" in prompt
