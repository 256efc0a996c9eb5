"""The carriers: quotes, and bookings (a side effect). Each carrier is a backend."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import StringConstraints

from pactmesh_contracts.tools import Amount, Endpoint, ToolArguments, ToolContract, ToolOutput

Carrier = Literal["northwind", "oceanic", "rapidfreight"]
CARRIERS: tuple[str, ...] = get_args(Carrier)
"""In the order the sandbox lists them."""
ShipmentId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class QuoteArgs(ToolArguments):
    """Whose quote, for which shipment."""

    carrier: Carrier
    shipment_id: ShipmentId


class Quote(ToolOutput):
    """A carrier's offer: the same each time it is asked."""

    quote_id: str
    carrier: str
    cost: float
    days: int


class BookArgs(ToolArguments):
    """The quote to book."""

    carrier: Carrier
    shipment_id: ShipmentId
    quote_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    cost: Amount
    """The quoted cost; the carrier refuses any other."""


class Booking(ToolOutput):
    """The booking made."""

    booking_id: str
    carrier: str
    cost: float


CARRIERS_QUOTE = ToolContract(
    "carriers.quote",
    "A carrier's quote for a shipment (the same each time it is asked).",
    QuoteArgs,
    Quote,
    Endpoint("carriers.{carrier}", "POST", "/carriers/{carrier}/quotes"),
)
CARRIERS_BOOK = ToolContract(
    "carriers.book",
    "Book a shipment on a carrier's quote (once per idempotency key).",
    BookArgs,
    Booking,
    Endpoint("carriers.{carrier}", "POST", "/carriers/{carrier}/bookings"),
    side_effecting=True,
)
