"""supply-chain-reroute: quote alternative routes for a disrupted shipment (falling
through to the next carrier when one fails), choose the cheapest, get approval when the
cost increase is above the threshold, then book it."""

from __future__ import annotations

import re
from typing import Any

from pactmesh_contracts.actions.reroute import RerouteBookingAction
from pactmesh_contracts.tools.carriers import CARRIERS_BOOK, CARRIERS_QUOTE
from pydantic import BaseModel, ConfigDict, Field

from pactmesh_workflows.definition import Routing, WorkflowDefinition
from pactmesh_workflows.fields import IdentifierField
from pactmesh_workflows.gates import Condition, GateSpec, Threshold

NAME = "supply-chain-reroute"


class RerouteInput(BaseModel):
    """The disrupted shipment and what its current route costs."""

    model_config = ConfigDict(extra="ignore")

    shipment_id: str = Field(pattern=r"^SH-\d+$")
    baseline_cost: float = Field(1000.0, ge=0)
    """Cost of the disrupted route; the increase is measured against it."""


class RerouteOutput(BaseModel):
    """The booked route."""

    model_config = ConfigDict(extra="forbid")

    booking_id: str
    carrier: str
    cost: float
    days: int
    cost_increase: float
    quotes: list[dict[str, Any]]
    approval: dict[str, Any]


SHIPMENT_ID = IdentifierField(
    "shipment_id",
    "A shipment identifier such as SH-77.",
    "SH-… identifiers as written",
    re.compile(r"\b(SH-\d+)\b", re.I),
    pattern=re.compile(r"^SH-\d+$"),
    example="SH-77",
    upper=True,
    stands_for="the shipment",
)

COST_INCREASE = GateSpec(
    rule="supply-chain.cost_increase_over_threshold",
    step="approve_booking",
    summary="Reroute costs more than the allowed increase",
    action=RerouteBookingAction,
    when=(
        Condition(
            field="cost_increase",
            op="gt",
            value=Threshold(threshold="max_cost_increase"),
            says="the route costs {cost_increase:g} more, over {max_cost_increase:g}",
        ),
    ),
)

WORKFLOW = WorkflowDefinition(
    name=NAME,
    description="Quote alternative routes for a disrupted shipment, approve costly ones, book.",
    package=__name__,
    input_model=RerouteInput,
    output_model=RerouteOutput,
    actions=(RerouteBookingAction,),
    tools=(CARRIERS_QUOTE, CARRIERS_BOOK),
    routing=Routing(
        description="a disrupted or stuck shipment that needs another route, port or carrier",
        examples=(
            "Shipment SH-4410 is stuck at Rotterdam because of the dock strike, find another route",
            "The canal is blocked; reroute our containers via the Cape",
            "Our carrier cancelled the truck for SH-88, book an alternative carrier",
            "Typhoon warning at Kaohsiung port, divert the inbound freight to another port",
            "Consignment held at customs for a week, can we send it by air instead?",
            "The rail line to Chicago is flooded, move shipment SH-1207 onto road transport",
            "Port congestion is delaying our pallets by 10 days, reroute them",
            "The vessel carrying SH-310 has engine failure, transfer the cargo to another ship",
            "The border crossing is closed, we need a different lane for the delivery trucks",
        ),
        keywords=(
            (
                r"\breroute\b|\bre-route\b|\b(another|alternative|new) route\b|\bdivert|\bredirect",
                3.0,
            ),
            (r"\bshipments?\b|\bSH-\d+", 2.0),
            (r"\bport\b|\bclosure\b|\bdisruption\b|\bstuck\b|\bstrike\b|\bcongest", 1.5),
            (
                r"\bcarriers?\b|\bfreight\b|\bcontainers?\b|\bcargo\b|\bvessel\b"
                r"|\bconsignments?\b|\bcustoms\b",
                1.0,
            ),
        ),
        fields=(SHIPMENT_ID,),
    ),
    gates=(COST_INCREASE,),
)
