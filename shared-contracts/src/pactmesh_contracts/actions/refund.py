"""Refund's action: money back to the original payment method."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from pactmesh_contracts.actions import Action, Currency


class RefundAction(Action):
    """Refund (part of) an order to the original payment method."""

    action_type: Literal["refund.v1"] = "refund.v1"
    order_id: Annotated[str, StringConstraints(pattern=r"^\d{3,12}$")]
    amount: Annotated[float, Field(gt=0, le=100_000)]
    currency: Currency = "USD"
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
