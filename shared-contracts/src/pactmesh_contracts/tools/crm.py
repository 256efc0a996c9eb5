"""The CRM: orders."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from pactmesh_contracts.tools import Endpoint, ToolArguments, ToolContract, ToolOutput

OrderId = Annotated[str, StringConstraints(pattern=r"^\d{3,12}$")]


class GetOrderArgs(ToolArguments):
    """Which order to look up."""

    order_id: OrderId


class Order(ToolOutput):
    """An order as the CRM holds it."""

    order_id: str
    status: str
    total: float
    currency: str
    items: list[str]
    customer_id: str


CRM_GET_ORDER = ToolContract(
    "crm.get_order",
    "Look an order up in the CRM.",
    GetOrderArgs,
    Order,
    Endpoint("crm", "GET", "/crm/orders/{order_id}"),
)
