"""In-process sandbox backends: a small knowledge base, CRM, procurement policy and
carrier quotes. Data is fixed and small so results are predictable in tests; the real
HTTP backends replace these behind the same tool contracts."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

from pactmesh_contracts.events import ToolErrorCode
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from pactmesh_tools.domain.registry import Tool, ToolError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- knowledge base -------------------------------------------------------------------

ARTICLES: tuple[tuple[str, str, str], ...] = (
    (
        "kb-001",
        "Reset your password",
        "Open Settings > Security, choose 'Reset password' and follow the link we e-mail you.",
    ),
    (
        "kb-002",
        "Track an order",
        "Your order's tracking link is in the shipping confirmation; status updates every 4 hours.",
    ),
    (
        "kb-003",
        "Cancel a subscription or membership plan",
        "Go to Billing > Plan and choose 'Cancel plan'; access continues to the end of the period.",
    ),
    (
        "kb-004",
        "Refunds for damaged or defective items",
        "Report the damage within 30 days; we refund to the original payment method in 5 days.",
    ),
    (
        "kb-005",
        "Change the delivery address",
        "Addresses can be changed until the order ships, from Orders > Details.",
    ),
    (
        "kb-006",
        "Update billing details",
        "Billing > Payment methods lets you add a card and make it the default.",
    ),
)

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    {"a", "an", "and", "the", "to", "my", "i", "me", "is", "of", "for", "in", "on", "it"}
    | {"how", "do", "can", "please", "what", "where"}
)


def _terms(text: str) -> set[str]:
    return {w.rstrip("s") for w in _WORD.findall(text.lower()) if w not in _STOP}


class KbSearchArgs(_Strict):
    query: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    limit: int = Field(3, ge=1, le=10)


class KbHit(_Strict):
    id: str
    title: str
    answer: str
    score: float


class KbSearchResult(_Strict):
    hits: list[KbHit]


async def kb_search(args: KbSearchArgs) -> KbSearchResult:
    """Rank articles by the share of query terms they contain (title and body)."""
    query = _terms(args.query)
    hits = []
    for article_id, title, body in ARTICLES:
        overlap = len(query & _terms(f"{title} {body}"))
        if overlap:
            hits.append(
                KbHit(
                    id=article_id,
                    title=title,
                    answer=body,
                    score=round(overlap / max(len(query), 1), 3),
                )
            )
    hits.sort(key=lambda h: h.score, reverse=True)
    return KbSearchResult(hits=hits[: args.limit])


# -- CRM ------------------------------------------------------------------------------

ORDERS: dict[str, dict[str, object]] = {
    "4411": {"status": "shipped", "total": 129.0, "items": ["wireless headphones"]},
    "1001": {"status": "delivered", "total": 59.5, "items": ["phone case", "charger"]},
    "2002": {"status": "processing", "total": 980.0, "items": ["laptop stand", "monitor"]},
    "3003": {"status": "delivered", "total": 15.0, "items": ["usb cable"]},
}


class GetOrderArgs(_Strict):
    order_id: Annotated[str, StringConstraints(pattern=r"^\d{3,12}$")]


class Order(_Strict):
    order_id: str
    status: str
    total: float
    items: list[str]


async def crm_get_order(args: GetOrderArgs) -> Order:
    """Look an order up in the sandbox CRM."""
    row = ORDERS.get(args.order_id)
    if row is None:
        raise ToolError(
            ToolErrorCode.BACKEND_ERROR, f"order {args.order_id} not found", retryable=False
        )
    return Order.model_validate({"order_id": args.order_id, **row})


# -- procurement policy ---------------------------------------------------------------

APPROVAL_LIMIT = 10_000.0
BLOCKED_VENDORS = ("shadyparts",)


class CheckPolicyArgs(_Strict):
    amount: float | None = Field(None, ge=0)
    text: Annotated[str, StringConstraints(max_length=20_000)] = ""


class PolicyCheck(_Strict):
    within_policy: bool
    flags: list[str]
    approval_limit: float


async def procurement_check_policy(args: CheckPolicyArgs) -> PolicyCheck:
    """Flag what a purchase request breaks in the sandbox procurement policy."""
    flags = []
    if args.amount is None:
        flags.append("no amount stated")
    elif args.amount > APPROVAL_LIMIT:
        flags.append(f"amount {args.amount:g} exceeds the approval limit {APPROVAL_LIMIT:g}")
    flags += [f"vendor {v} is blocked" for v in BLOCKED_VENDORS if v in args.text.lower()]
    return PolicyCheck(within_policy=not flags, flags=flags, approval_limit=APPROVAL_LIMIT)


# -- carriers -------------------------------------------------------------------------

CARRIERS = ("northwind", "oceanic", "rapidfreight")


class QuoteArgs(_Strict):
    shipment_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Quote(_Strict):
    carrier: str
    cost: float
    days: int


class Quotes(_Strict):
    shipment_id: str
    quotes: list[Quote]


async def carriers_quote(args: QuoteArgs) -> Quotes:
    """Quotes from every sandbox carrier, stable for a given shipment."""
    quotes = []
    for carrier in CARRIERS:
        digest = hashlib.sha256(f"{carrier}:{args.shipment_id}".encode()).digest()
        quotes.append(
            Quote(carrier=carrier, cost=round(800 + digest[0] * 10.0, 2), days=2 + digest[1] % 6)
        )
    return Quotes(shipment_id=args.shipment_id, quotes=quotes)


def sandbox_tools() -> list[Tool]:
    """The sandbox's tools."""
    return [
        Tool("kb.search", "Search the knowledge base.", KbSearchArgs, KbSearchResult, kb_search),
        Tool("crm.get_order", "Look an order up.", GetOrderArgs, Order, crm_get_order),
        Tool(
            "procurement.check_policy",
            "Check a purchase against policy.",
            CheckPolicyArgs,
            PolicyCheck,
            procurement_check_policy,
        ),
        Tool("carriers.quote", "Quote alternative routes.", QuoteArgs, Quotes, carriers_quote),
    ]
