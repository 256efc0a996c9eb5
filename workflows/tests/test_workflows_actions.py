"""Action contracts (in shared-contracts), by the tag the registry knows them by: what a
workflow may execute and what a reviewer's edit must satisfy."""

from __future__ import annotations

from typing import Any

import pytest
from pactmesh_contracts.actions.procurement import PurchaseOrderAction
from pactmesh_contracts.actions.refund import RefundAction
from pactmesh_contracts.actions.reroute import RerouteBookingAction
from pactmesh_contracts.actions.triage import TriageHandover
from pactmesh_workflows.registry import registry
from pydantic import ValidationError

validate_action = registry().validate_action

PURCHASE_ORDER: dict[str, Any] = {
    "vendor": "Acme Supplies",
    "items": [
        {"description": "laptops", "quantity": 10, "unit_price": 1200.0},
        {"description": "docks", "quantity": 10, "unit_price": 150.5},
    ],
    "amount": 13505.0,
}
REFUND: dict[str, Any] = {"order_id": "4411", "amount": 129.99, "reason": "arrived broken"}
REROUTE: dict[str, Any] = {
    "shipment_id": "SH-77",
    "carrier": "oceanic",
    "quote_id": "q-oceanic-1",
    "cost": 1180.0,
    "days": 6,
    "cost_increase": 180.0,
}
HANDOVER: dict[str, Any] = {"question": "Where is my parcel?", "reason": "no article"}

VALID: list[tuple[str, dict[str, Any], type[Any]]] = [
    ("purchase_order.v1", PURCHASE_ORDER, PurchaseOrderAction),
    ("refund.v1", REFUND, RefundAction),
    ("reroute_booking.v1", REROUTE, RerouteBookingAction),
    ("triage_handover.v1", HANDOVER, TriageHandover),
]


def _error_types(action_type: str, data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        validate_action(action_type, data)
    return [(tuple(e["loc"]), e["type"]) for e in caught.value.errors()]


def test_every_action_contract_is_registered_by_its_tag() -> None:
    assert {tag: model for tag, _, model in VALID}.items() <= registry().actions.items()
    proposed = {t for d in registry().values() for t in d.action_types}
    assert set(registry().actions) == proposed


@pytest.mark.parametrize(("action_type", "data", "model"), VALID, ids=[v[0] for v in VALID])
def test_valid_actions_are_accepted(
    action_type: str, data: dict[str, Any], model: type[Any]
) -> None:
    action = validate_action(action_type, data)

    assert type(action) is model
    assert action.action_type == action_type
    dumped = action.model_dump(mode="json")
    assert {k: dumped[k] for k in data} == data


@pytest.mark.parametrize(("action_type", "data", "model"), VALID, ids=[v[0] for v in VALID])
def test_the_tag_may_travel_with_the_action(
    action_type: str, data: dict[str, Any], model: type[Any]
) -> None:
    """What a workflow proposes is a dump of the model, tag included; it must validate back."""
    proposed = validate_action(action_type, data).model_dump(mode="json")
    assert validate_action(action_type, proposed).model_dump(mode="json") == proposed


def test_json_numbers_are_accepted_where_floats_are_expected() -> None:
    """Edits arrive as JSON, where 130 is as good as 130.0."""
    action = validate_action("refund.v1", {**REFUND, "amount": 130})
    assert isinstance(action, RefundAction)
    assert action.amount == 130.0


@pytest.mark.parametrize(("action_type", "data", "model"), VALID, ids=[v[0] for v in VALID])
def test_unknown_fields_are_refused(
    action_type: str, data: dict[str, Any], model: type[Any]
) -> None:
    assert _error_types(action_type, {**data, "approved_by": "me"}) == [
        (("approved_by",), "extra_forbidden")
    ]


def test_unknown_fields_inside_a_line_item_are_refused() -> None:
    items = [{**PURCHASE_ORDER["items"][0], "discount": 0.5}, PURCHASE_ORDER["items"][1]]
    assert _error_types("purchase_order.v1", {**PURCHASE_ORDER, "items": items}) == [
        (("items", 0, "discount"), "extra_forbidden")
    ]


def test_another_actions_tag_is_refused() -> None:
    assert _error_types("refund.v1", {**REFUND, "action_type": "purchase_order.v1"}) == [
        (("action_type",), "literal_error")
    ]


@pytest.mark.parametrize("amount", [13504.0, 13506.0, 1.0, 0.0])
def test_purchase_order_amount_must_be_the_total_of_its_lines(amount: float) -> None:
    with pytest.raises(ValidationError, match=r"not the total of the lines \(13505\.0\)"):
        validate_action("purchase_order.v1", {**PURCHASE_ORDER, "amount": amount})


def test_purchase_order_total_is_compared_to_the_cent() -> None:
    assert validate_action("purchase_order.v1", {**PURCHASE_ORDER, "amount": 13505.004})


def test_purchase_order_needs_at_least_one_line() -> None:
    assert _error_types("purchase_order.v1", {**PURCHASE_ORDER, "items": [], "amount": 0.0}) == [
        (("items",), "too_short")
    ]


@pytest.mark.parametrize("amount", [0, 0.0, -5.0])
def test_refund_amount_must_be_positive(amount: float) -> None:
    assert _error_types("refund.v1", {**REFUND, "amount": amount}) == [
        (("amount",), "greater_than")
    ]


@pytest.mark.parametrize(
    ("action_type", "data", "loc", "error_type"),
    [
        ("refund.v1", {**REFUND, "order_id": "ORD-1"}, ("order_id",), "string_pattern_mismatch"),
        ("refund.v1", {**REFUND, "currency": "usd"}, ("currency",), "string_pattern_mismatch"),
        ("refund.v1", {**REFUND, "amount": "129.99"}, ("amount",), "float_type"),
        ("refund.v1", {k: v for k, v in REFUND.items() if k != "reason"}, ("reason",), "missing"),
        (
            "reroute_booking.v1",
            {**REROUTE, "shipment_id": "77"},
            ("shipment_id",),
            "string_pattern_mismatch",
        ),
        ("reroute_booking.v1", {**REROUTE, "days": -1}, ("days",), "greater_than_equal"),
        ("triage_handover.v1", {**HANDOVER, "question": ""}, ("question",), "string_too_short"),
    ],
)
def test_field_constraints_are_enforced(
    action_type: str, data: dict[str, Any], loc: tuple[str, ...], error_type: str
) -> None:
    assert _error_types(action_type, data) == [(loc, error_type)]


def test_an_unknown_action_type_is_a_lookup_error() -> None:
    with pytest.raises(LookupError, match=r"no action contract 'wire_transfer\.v1'"):
        validate_action("wire_transfer.v1", {"amount": 1})


def test_actions_are_immutable() -> None:
    action = validate_action("refund.v1", REFUND)
    with pytest.raises(ValidationError, match="frozen"):
        action.amount = 1.0  # type: ignore[attr-defined]
