"""The sandbox's tools: typed contracts, each run as HTTP requests to a sandbox backend
(``python -m pactmesh_sandbox``). Backend names match the sandbox's fault switches."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar, get_args

from pactmesh_contracts.events import ToolErrorCode
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from pactmesh_tools.adapters.http import HttpBackends
from pactmesh_tools.domain.errors import ToolError
from pactmesh_tools.domain.registry import Tool
from pactmesh_tools.domain.resilience import CallContext

Carrier = Literal["northwind", "oceanic", "rapidfreight"]
CARRIERS: tuple[str, ...] = get_args(Carrier)
BACKENDS: tuple[str, ...] = (
    "kb",
    "crm",
    "procurement",
    "erp",
    *(f"carriers.{carrier}" for carrier in CARRIERS),
    "payments",
)
"""Every backend the tools call; each carrier is one, with its own breaker and limit."""

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Amount = Annotated[float, Field(gt=0, le=1_000_000_000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
ShipmentId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
OrderId = Annotated[str, StringConstraints(pattern=r"^\d{3,12}$")]


class _Args(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, strict=True, use_attribute_docstrings=True
    )


class _Result(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


# -- contracts ------------------------------------------------------------------------


class KbSearchArgs(_Args):
    query: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    limit: int = Field(3, ge=1, le=10)


class KbHit(_Result):
    id: str
    title: str
    answer: str
    score: float
    """Share of the query's terms the article contains, 0 to 1."""


class KbSearchResult(_Result):
    hits: list[KbHit]


class GetOrderArgs(_Args):
    order_id: OrderId


class Order(_Result):
    order_id: str
    status: str
    total: float
    currency: str
    items: list[str]
    customer_id: str


class LineItem(_Args):
    description: Name
    quantity: int = Field(ge=1, le=1_000_000)
    unit_price: float = Field(ge=0, le=1_000_000_000)


class CheckPolicyArgs(_Args):
    vendor: Name | None = None
    amount: float | None = Field(None, ge=0)
    """``None`` when the request states no amount (itself a policy flag)."""
    currency: Currency = "USD"
    items: list[LineItem] = Field(default_factory=list, max_length=200)
    text: Annotated[str, StringConstraints(max_length=20_000)] = ""
    """The purchase request's own words, scanned for blocked vendors."""


class PolicyCheck(_Result):
    within_policy: bool
    flags: list[str]
    approval_limit: float


class CreatePurchaseOrderArgs(_Args):
    vendor: Name
    items: list[LineItem] = Field(min_length=1, max_length=200)
    amount: Amount
    currency: Currency


class PurchaseOrderCreated(_Result):
    po_id: str
    status: str
    amount: float


class QuoteArgs(_Args):
    carrier: Carrier
    shipment_id: ShipmentId


class Quote(_Result):
    quote_id: str
    carrier: str
    cost: float
    days: int


class BookArgs(_Args):
    carrier: Carrier
    shipment_id: ShipmentId
    quote_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    cost: Amount
    """The quoted cost; the carrier refuses any other."""


class Booking(_Result):
    booking_id: str
    carrier: str
    cost: float


class RefundArgs(_Args):
    order_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    amount: Amount
    currency: Currency
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2_000)]


class Refund(_Result):
    refund_id: str
    amount: float


# -- tools ----------------------------------------------------------------------------

M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], backend: str, body: Any) -> M:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ToolError(
            ToolErrorCode.BACKEND_ERROR,
            f"{backend} answered outside its contract: {exc}",
            retryable=False,
        ) from exc


def sandbox_tools(http: HttpBackends) -> list[Tool]:
    """The sandbox's tools, calling it through ``http``."""

    async def kb_search(args: KbSearchArgs, ctx: CallContext) -> KbSearchResult:
        params = {"q": args.query, "limit": args.limit}
        body = await http.request("kb", "GET", "/kb/search", params=params, ctx=ctx)
        return _parse(KbSearchResult, "kb", body)

    async def crm_get_order(args: GetOrderArgs, ctx: CallContext) -> Order:
        body = await http.request("crm", "GET", f"/crm/orders/{args.order_id}", ctx=ctx)
        return _parse(Order, "crm", body)

    async def check_policy(args: CheckPolicyArgs, ctx: CallContext) -> PolicyCheck:
        payload = args.model_dump(mode="json")
        body = await http.request(
            "procurement", "POST", "/procurement/check", json=payload, ctx=ctx
        )
        return _parse(PolicyCheck, "procurement", body)

    async def create_purchase_order(
        args: CreatePurchaseOrderArgs, ctx: CallContext
    ) -> PurchaseOrderCreated:
        payload = args.model_dump(mode="json")
        body = await http.request(
            "erp", "POST", "/erp/purchase-orders", json=payload, idempotent=True, ctx=ctx
        )
        return _parse(PurchaseOrderCreated, "erp", body)

    async def carriers_quote(args: QuoteArgs, ctx: CallContext) -> Quote:
        backend = f"carriers.{args.carrier}"
        path = f"/carriers/{args.carrier}/quotes"
        payload = {"shipment_id": args.shipment_id}
        body = await http.request(backend, "POST", path, json=payload, ctx=ctx)
        return _parse(Quote, backend, body)

    async def carriers_book(args: BookArgs, ctx: CallContext) -> Booking:
        backend = f"carriers.{args.carrier}"
        payload = args.model_dump(mode="json", exclude={"carrier"})
        path = f"/carriers/{args.carrier}/bookings"
        body = await http.request(backend, "POST", path, json=payload, idempotent=True, ctx=ctx)
        return _parse(Booking, backend, body)

    async def payments_refund(args: RefundArgs, ctx: CallContext) -> Refund:
        payload = args.model_dump(mode="json")
        body = await http.request(
            "payments", "POST", "/payments/refunds", json=payload, idempotent=True, ctx=ctx
        )
        return _parse(Refund, "payments", body)

    return [
        Tool("kb.search", "Search the knowledge base.", KbSearchArgs, KbSearchResult, kb_search),
        Tool("crm.get_order", "Look an order up in the CRM.", GetOrderArgs, Order, crm_get_order),
        Tool(
            "procurement.check_policy",
            "Check a purchase against the procurement policy.",
            CheckPolicyArgs,
            PolicyCheck,
            check_policy,
        ),
        Tool(
            "erp.create_purchase_order",
            "Raise a purchase order in the ERP (once per idempotency key).",
            CreatePurchaseOrderArgs,
            PurchaseOrderCreated,
            create_purchase_order,
            side_effecting=True,
        ),
        Tool(
            "carriers.quote",
            "A carrier's quote for a shipment (the same each time it is asked).",
            QuoteArgs,
            Quote,
            carriers_quote,
        ),
        Tool(
            "carriers.book",
            "Book a shipment on a carrier's quote (once per idempotency key).",
            BookArgs,
            Booking,
            carriers_book,
            side_effecting=True,
        ),
        Tool(
            "payments.refund",
            "Refund (part of) an order (once per idempotency key).",
            RefundArgs,
            Refund,
            payments_refund,
            side_effecting=True,
        ),
    ]
