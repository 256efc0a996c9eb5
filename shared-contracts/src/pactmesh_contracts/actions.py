"""Actions a workflow proposes and a reviewer may approve, reject or edit.

Both sides are built to these models: the orchestrator executes only an action that
validates, and the hitl service validates a reviewer's edit against the same model
before it is accepted (so an edit can never smuggle in a field the workflow ignores).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Money = Annotated[float, Field(ge=0, le=100_000_000)]


class Action(BaseModel):
    """Base of every action: strict, immutable, tagged."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    action_type: str


class LineItem(BaseModel):
    """One line of a purchase order."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    description: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    quantity: Annotated[int, Field(gt=0, le=1_000_000)]
    unit_price: Money


class PurchaseOrderAction(Action):
    """Commit a purchase order in the ERP."""

    action_type: Literal["purchase_order.v1"] = "purchase_order.v1"
    vendor: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    items: Annotated[list[LineItem], Field(min_length=1, max_length=200)]
    amount: Money
    """Total of the order; must equal the sum of its lines (to the cent)."""
    currency: Currency = "USD"

    @model_validator(mode="after")
    def _amount_is_the_total(self) -> PurchaseOrderAction:
        total = round(sum(i.quantity * i.unit_price for i in self.items), 2)
        if abs(total - self.amount) > 0.01:
            raise ValueError(f"amount {self.amount} is not the total of the lines ({total})")
        return self


class RefundAction(Action):
    """Refund (part of) an order to the original payment method."""

    action_type: Literal["refund.v1"] = "refund.v1"
    order_id: Annotated[str, StringConstraints(pattern=r"^\d{3,12}$")]
    amount: Annotated[float, Field(gt=0, le=100_000)]
    currency: Currency = "USD"
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class RerouteBookingAction(Action):
    """Book a shipment on an alternative route."""

    action_type: Literal["reroute_booking.v1"] = "reroute_booking.v1"
    shipment_id: Annotated[str, StringConstraints(pattern=r"^SH-\d+$")]
    carrier: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,40}$")]
    quote_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    cost: Money
    days: Annotated[int, Field(ge=0, le=365)]
    cost_increase: float
    """Cost above the disrupted route's; the approval gate looks at it."""


class TriageHandover(Action):
    """Hand a support request to a person: edit supplies the answer to send."""

    action_type: Literal["triage_handover.v1"] = "triage_handover.v1"
    question: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    reason: Annotated[str, StringConstraints(max_length=2_000)]
    suggested_answer: Annotated[str, StringConstraints(max_length=10_000)] | None = None


ACTIONS: dict[str, type[Action]] = {
    model.model_fields["action_type"].default: model
    for model in (PurchaseOrderAction, RefundAction, RerouteBookingAction, TriageHandover)
}
"""Every action contract, by its tag."""


def validate_action(action_type: str, data: dict[str, Any]) -> Action:
    """Validate ``data`` as the action named ``action_type`` (raises on any error).

    ``data`` comes from JSON (events, HTTP bodies), so it is validated in JSON mode: the
    models stay strict about types, yet accept what JSON can express.
    """
    model = ACTIONS.get(action_type)
    if model is None:
        raise LookupError(f"no action contract {action_type!r}")
    return model.model_validate_json(_json(data))


def _json(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data)
