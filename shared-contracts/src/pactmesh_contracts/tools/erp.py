"""The ERP: purchase orders (a side effect)."""

from __future__ import annotations

from pydantic import Field

from pactmesh_contracts.tools import (
    Amount,
    Currency,
    Endpoint,
    Name,
    ToolArguments,
    ToolContract,
    ToolOutput,
)
from pactmesh_contracts.tools.procurement import LineItem


class CreatePurchaseOrderArgs(ToolArguments):
    """The order to raise."""

    vendor: Name
    items: list[LineItem] = Field(min_length=1, max_length=200)
    amount: Amount
    currency: Currency


class PurchaseOrderCreated(ToolOutput):
    """The order the ERP raised."""

    po_id: str
    status: str
    amount: float


ERP_CREATE_PURCHASE_ORDER = ToolContract(
    "erp.create_purchase_order",
    "Raise a purchase order in the ERP (once per idempotency key).",
    CreatePurchaseOrderArgs,
    PurchaseOrderCreated,
    Endpoint("erp", "POST", "/erp/purchase-orders"),
    side_effecting=True,
)
