"""Procurement's action: a purchase order to commit in the ERP."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from pactmesh_contracts.actions import Action, Currency, Money


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
