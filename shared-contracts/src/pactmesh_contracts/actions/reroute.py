"""Supply-chain reroute's action: a booking on an alternative route."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from pactmesh_contracts.actions import Action, Money


class RerouteBookingAction(Action):
    """Book a shipment on an alternative route."""

    action_type: Literal["reroute_booking.v1"] = "reroute_booking.v1"
    shipment_id: Annotated[str, StringConstraints(pattern=r"^SH-\d+$")]
    carrier: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,40}$")]
    quote_id: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    cost: Money
    days: Annotated[int, Field(ge=0, le=365)]
    cost_increase: float
    """Cost above the disrupted route's; the approval gate looks at it."""
