"""The sandbox's fixed data and pure logic: knowledge base ranking, sample orders, the
procurement policy and carrier quotes. Small and deterministic so tests can name results.
"""

from __future__ import annotations

import hashlib
import re

from pactmesh_sandbox.models import KbHit, Order, PolicyCheck, PolicyCheckRequest, Quote

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


def search_articles(*, query: str, limit: int) -> list[KbHit]:
    """Articles ranked by the share of the query's terms they contain (title and body)."""
    terms = _terms(query)
    hits = []
    for article_id, title, body in ARTICLES:
        overlap = len(terms & _terms(f"{title} {body}"))
        if overlap:
            score = round(overlap / max(len(terms), 1), 3)
            hits.append(KbHit(id=article_id, title=title, answer=body, score=score))
    hits.sort(key=lambda h: h.score, reverse=True)
    return hits[:limit]


# -- CRM ------------------------------------------------------------------------------

_STANDARD_ORDERS = (
    Order(
        order_id="4411",
        status="shipped",
        total=129.0,
        currency="USD",
        items=["wireless headphones"],
        customer_id="C-1001",
    ),
    Order(
        order_id="1001",
        status="delivered",
        total=59.5,
        currency="USD",
        items=["phone case", "charger"],
        customer_id="C-1002",
    ),
    Order(
        order_id="2002",
        status="processing",
        total=980.0,
        currency="USD",
        items=["laptop stand", "monitor"],
        customer_id="C-1003",
    ),
    Order(
        order_id="3003",
        status="delivered",
        total=15.0,
        currency="USD",
        items=["usb cable"],
        customer_id="C-1001",
    ),
)
ORDERS: dict[str, dict[str, Order]] = {
    # Each tenant its own customers' orders (the same numbers in two tenants are two
    # different orders); globex's are nobody else's.
    "default": {o.order_id: o for o in _STANDARD_ORDERS},
    "acme": {o.order_id: o for o in _STANDARD_ORDERS},
    "globex": {
        "5005": Order(
            order_id="5005",
            status="delivered",
            total=450.0,
            currency="USD",
            items=["office chair"],
            customer_id="G-2001",
        ),
    },
}
"""Orders by tenant, then order number."""


def order(tenant: str, order_id: str) -> Order | None:
    """Tenant ``tenant``'s order ``order_id``: another tenant's is not found."""
    return ORDERS.get(tenant, {}).get(order_id)


# -- procurement policy ---------------------------------------------------------------

APPROVAL_LIMIT = 10_000.0
BLOCKED_VENDORS = ("shadyparts",)


def check_policy(request: PolicyCheckRequest) -> PolicyCheck:
    """What a purchase breaks in the procurement policy: amount and blocked vendors."""
    flags = []
    if request.amount is None:
        flags.append("no amount stated")
    elif request.amount > APPROVAL_LIMIT:
        flags.append(f"amount {request.amount:g} exceeds the approval limit {APPROVAL_LIMIT:g}")
    named = f"{request.vendor or ''} {request.text}".lower()
    flags += [f"vendor {v} is blocked" for v in BLOCKED_VENDORS if v in named]
    return PolicyCheck(within_policy=not flags, flags=flags, approval_limit=APPROVAL_LIMIT)


# -- carriers -------------------------------------------------------------------------

CARRIERS = ("northwind", "oceanic", "rapidfreight")


def quote(*, carrier: str, shipment_id: str) -> Quote:
    """A carrier's quote for a shipment: the same every time it is asked."""
    digest = hashlib.sha256(f"{carrier}:{shipment_id}".encode()).digest()
    return Quote(
        quote_id=f"Q-{digest[2:7].hex().upper()}",
        carrier=carrier,
        cost=round(800 + digest[0] * 10.0, 2),
        days=2 + digest[1] % 6,
    )
