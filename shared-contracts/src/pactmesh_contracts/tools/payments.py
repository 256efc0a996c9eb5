"""Payments: refunds (a side effect)."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from pactmesh_contracts.tools import (
    Amount,
    Currency,
    Endpoint,
    ToolArguments,
    ToolContract,
    ToolOutput,
)


class RefundArgs(ToolArguments):
    """The refund to pay."""

    order_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    amount: Amount
    currency: Currency
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2_000)]


class Refund(ToolOutput):
    """The refund paid."""

    refund_id: str
    amount: float


PAYMENTS_REFUND = ToolContract(
    "payments.refund",
    "Refund (part of) an order (once per idempotency key).",
    RefundArgs,
    Refund,
    Endpoint("payments", "POST", "/payments/refunds"),
    side_effecting=True,
)
