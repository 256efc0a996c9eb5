"""The contract a model fills to route a request, and the business rules on its answer.

``structured_call`` parses the model's answer strictly against ``RoutingDecision`` (no
unknown field survives), then runs ``business_rules``; a broken answer is sent back once
for repair, and a second broken one goes to a person.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from typing import Literal, get_args

from pactmesh_contracts.topics import WORKFLOWS
from pactmesh_reasoning.structured import Validator
from pydantic import BaseModel, ConfigDict, Field, JsonValue

RegisteredWorkflow = Literal["support-triage", "procurement", "supply-chain-reroute", "refund"]
"""The registered workflows (``pactmesh_contracts.topics.WORKFLOWS``) as the schema's enum."""
if set(get_args(RegisteredWorkflow)) != set(WORKFLOWS):  # pragma: no cover - a drift guard
    raise RuntimeError(f"RegisteredWorkflow must list exactly the registered {WORKFLOWS}")

MAX_AMOUNT = 100_000_000.0
"""The largest amount any workflow accepts (procurement's ceiling)."""
ID_PATTERNS = {
    "order_id": re.compile(r"^\d{3,12}$"),
    "po_number": re.compile(r"^PO-\d+$"),
    "shipment_id": re.compile(r"^SH-\d+$"),
}
ID_EXAMPLES = {"order_id": "4411", "po_number": "PO-1042", "shipment_id": "SH-77"}


class RoutingFields(BaseModel):
    """Inputs the chosen workflow's contract needs, as written in the request; leave out
    whatever the request does not state."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    amount: float | None = None
    """A money amount stated in the request (refund or order total), as a number."""
    order_id: str | None = None
    """A customer order number: digits only, for example 4411."""
    po_number: str | None = None
    """A purchase order number such as PO-1042."""
    shipment_id: str | None = None
    """A shipment identifier such as SH-77."""
    vendor: str | None = None
    """The supplier a purchase should go to (procurement only)."""


class RoutingDecision(BaseModel):
    """Route one customer or operations request to the workflow that should handle it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    workflow: RegisteredWorkflow
    """support-triage: account, product, delivery-status and other questions for support;
    procurement: buying goods or services, purchase orders, vendors; supply-chain-reroute:
    a disrupted shipment that needs another route or carrier; refund: money back for an
    order, a charge or a faulty item."""
    confidence: float = Field(ge=0.0, le=1.0)
    """How sure you are that ``workflow`` is right, from 0 to 1."""
    reason: str = Field(min_length=1, max_length=1000)
    """One sentence on why this workflow fits the request."""
    fields: RoutingFields = Field(default_factory=RoutingFields)

    def field_values(self) -> dict[str, JsonValue]:
        """The fields the answer states (those left out are omitted)."""
        values: dict[str, JsonValue] = self.fields.model_dump(exclude_none=True)
        return values


def business_rules(*, text: str, workflows: Collection[str]) -> list[Validator[RoutingDecision]]:
    """The checks an answer about ``text`` must pass, routing among ``workflows``."""

    def registered(decision: RoutingDecision) -> list[str]:
        if decision.workflow in workflows:
            return []
        return [f"workflow: {decision.workflow!r} is not one of {', '.join(workflows)}"]

    def sane_amount(decision: RoutingDecision) -> list[str]:
        amount = decision.fields.amount
        if amount is None or (math.isfinite(amount) and 0 < amount <= MAX_AMOUNT):
            return []
        return [f"fields.amount: {amount!r} is not between 0 and {MAX_AMOUNT:,.0f}"]

    def identifiers(decision: RoutingDecision) -> list[str]:
        return _identifier_errors(decision.fields, text)

    return [registered, sane_amount, identifiers]


def _identifier_errors(fields: RoutingFields, text: str) -> list[str]:
    errors: list[str] = []
    for name, pattern in ID_PATTERNS.items():
        value = getattr(fields, name)
        if value is None:
            continue
        if not pattern.match(value):
            errors.append(f"fields.{name}: {value!r} is not like {ID_EXAMPLES[name]!r}")
        elif value.lower() not in text.lower():
            errors.append(f"fields.{name}: {value!r} does not occur in the request")
    if fields.vendor is not None and not 0 < len(fields.vendor.strip()) <= 120:
        errors.append("fields.vendor: must be a name of 1 to 120 characters")
    return errors
