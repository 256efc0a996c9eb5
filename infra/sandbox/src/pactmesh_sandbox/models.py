"""The sandbox's HTTP contracts. Requests are strict: unknown fields and strings where
numbers belong are refused (422), as a real backend's schema validation would."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""An ISO 4217 code, for example ``USD``."""
Amount = Annotated[float, Field(gt=0, le=1_000_000_000)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(max_length=20_000)]
Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class Request(BaseModel):
    """A request body: strict, closed."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Answer(BaseModel):
    """A response body: closed, so clients can forbid extra fields too."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# -- knowledge base -------------------------------------------------------------------


class KbHit(Answer):
    id: str
    title: str
    answer: str
    score: float
    """Share of the query's terms the article contains, 0 to 1."""


class KbSearchResult(Answer):
    hits: list[KbHit]


# -- CRM ------------------------------------------------------------------------------


class Order(Answer):
    order_id: str
    status: str
    total: float
    currency: str
    items: list[str]
    customer_id: str


# -- procurement policy ---------------------------------------------------------------


class LineItem(Request):
    description: Name
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]
    unit_price: Annotated[float, Field(ge=0, le=1_000_000_000)]


class PolicyCheckRequest(Request):
    vendor: Name | None = None
    amount: Annotated[float, Field(ge=0, le=1_000_000_000)] | None = None
    """``None`` when the purchase request states no amount (itself a policy flag)."""
    currency: Currency = "USD"
    items: Annotated[list[LineItem], Field(max_length=200)] = []
    text: Text = ""
    """The purchase request's own words, scanned for blocked vendors."""


class PolicyCheck(Answer):
    within_policy: bool
    flags: list[str]
    """What the purchase breaks, one sentence each; empty when within policy."""
    approval_limit: float


# -- ERP ------------------------------------------------------------------------------


class PurchaseOrderRequest(Request):
    vendor: Name
    items: Annotated[list[LineItem], Field(min_length=1, max_length=200)]
    amount: Amount
    currency: Currency


class PurchaseOrderCreated(Answer):
    po_id: str
    status: Literal["created"] = "created"
    amount: float


class PurchaseOrder(Answer):
    po_id: str
    status: Literal["created"]
    vendor: str
    items: list[dict[str, JsonValue]]
    amount: float
    currency: str
    idempotency_key: str
    created_at: datetime


# -- carriers -------------------------------------------------------------------------


class QuoteRequest(Request):
    shipment_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]


class Quote(Answer):
    quote_id: str
    carrier: str
    cost: float
    days: int


class BookingRequest(Request):
    shipment_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    quote_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    cost: Amount


class Booking(Answer):
    booking_id: str
    carrier: str
    cost: float


# -- payments -------------------------------------------------------------------------


class RefundRequest(Request):
    order_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    amount: Amount
    currency: Currency
    reason: Annotated[str, StringConstraints(min_length=1, max_length=2_000)]


class Refund(Answer):
    refund_id: str
    amount: float


# -- ledger ---------------------------------------------------------------------------

EffectKind = Literal["purchase_order", "booking", "refund", "prior_authorization"]


class LedgerEntry(Answer):
    """One side effect the sandbox performed: exactly one per idempotency key."""

    seq: int
    """Order of the effects, starting at 1."""
    kind: EffectKind
    id: str
    """The created object's id (``po_id``, ``booking_id``, ``refund_id``, ``authorization_id``)."""
    idempotency_key: str
    body: dict[str, JsonValue]
    """The request body that caused the effect."""
    at: datetime
    tenant: str
    """The tenant the effect was performed for."""
    principal: str
    """The principal (subject) the effect was performed for."""


# -- faults ---------------------------------------------------------------------------


class FaultConfig(Request):
    """What a backend does wrong. Every field defaults to "nothing", so ``{}`` heals it.

    Per request, in this order: sleep ``latency_ms`` plus up to ``latency_jitter_ms``;
    answer 503 while ``fail_next`` lasts; then one seeded draw picks at most one of
    drop (close the connection without answering), timeout (hang) or error (500);
    otherwise the request is served, and answered 503 anyway while
    ``fail_after_commit_next`` lasts (its side effect, if any, has happened).
    """

    latency_ms: Annotated[int, Field(ge=0, le=60_000)] = 0
    latency_jitter_ms: Annotated[int, Field(ge=0, le=60_000)] = 0
    error_rate: Rate = 0.0
    """Share of requests answered 500 before anything is done."""
    timeout_rate: Rate = 0.0
    """Share of requests held without an answer until the client gives up (or the
    sandbox's ``hang_s`` passes: then 504)."""
    drop_rate: Rate = 0.0
    """Share of requests whose connection is closed without any response."""
    fail_next: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    """The next N requests answer 503 before anything is done (deterministic)."""
    fail_after_commit_next: Annotated[int, Field(ge=0, le=1_000_000)] = 0
    """The next N requests are served (side effects committed) but answered 503: a
    client that retries with the same idempotency key must get the original result."""

    @model_validator(mode="after")
    def _rates_fit(self) -> FaultConfig:
        if self.error_rate + self.timeout_rate + self.drop_rate > 1.0 + 1e-9:
            raise ValueError("error_rate + timeout_rate + drop_rate must not exceed 1")
        return self
