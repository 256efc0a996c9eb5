"""The procurement policy: checking a purchase against it."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from pactmesh_contracts.tools import (
    Currency,
    Endpoint,
    Name,
    ToolArguments,
    ToolContract,
    ToolOutput,
)


class LineItem(ToolArguments):
    """One line of a purchase."""

    description: Name
    quantity: int = Field(ge=1, le=1_000_000)
    unit_price: float = Field(ge=0, le=1_000_000_000)


class CheckPolicyArgs(ToolArguments):
    """The purchase to check."""

    vendor: Name | None = None
    amount: float | None = Field(None, ge=0)
    """``None`` when the request states no amount (itself a policy flag)."""
    currency: Currency = "USD"
    items: list[LineItem] = Field(default_factory=list, max_length=200)
    text: Annotated[str, StringConstraints(max_length=20_000)] = ""
    """The purchase request's own words, scanned for blocked vendors."""


class PolicyCheck(ToolOutput):
    """What the purchase breaks in the policy."""

    within_policy: bool
    flags: list[str]
    approval_limit: float


PROCUREMENT_CHECK_POLICY = ToolContract(
    "procurement.check_policy",
    "Check a purchase against the procurement policy.",
    CheckPolicyArgs,
    PolicyCheck,
    Endpoint("procurement", "POST", "/procurement/check"),
)
