"""supply-chain-reroute: quote alternative routes for a disrupted shipment (falling
through to the next carrier when one fails), choose the cheapest, get approval when the
cost increase is above the threshold, then book it."""

from __future__ import annotations

from typing import Any

from langgraph.graph import StateGraph
from pactmesh_contracts.actions import RerouteBookingAction
from pydantic import BaseModel, ConfigDict, Field

from pactmesh_orchestrator.domain.graphs import (
    action_fields,
    add_gated_action,
    start_graph,
    tool_failure_reason,
    tool_ok,
    tool_result,
    tool_step,
    unless_ended,
)
from pactmesh_orchestrator.domain.policy import GatePolicy
from pactmesh_orchestrator.domain.reasoning import Reasoning
from pactmesh_orchestrator.domain.registry import WorkflowDefinition
from pactmesh_orchestrator.domain.state import WorkflowState, entry

NAME = "supply-chain-reroute"
CARRIERS = ("northwind", "oceanic", "rapidfreight")
"""In order of preference: the first is the primary carrier."""
QUOTES_WANTED = 2
"""Alternatives to compare before choosing."""


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


def _quote_step(carrier: str) -> str:
    return f"quote_{carrier}"


def _quotes(state: WorkflowState) -> list[dict[str, Any]]:
    return [tool_result(state, _quote_step(c)) for c in CARRIERS if tool_ok(state, _quote_step(c))]


def _quote_arguments(carrier: str) -> Any:
    def arguments(state: WorkflowState) -> dict[str, Any]:
        return {"carrier": carrier, "shipment_id": state["fields"]["shipment_id"]}

    return arguments


def _after_quote(index: int) -> Any:
    def route(state: WorkflowState) -> str:
        if len(_quotes(state)) >= QUOTES_WANTED or index + 1 == len(CARRIERS):
            return "choose_route"
        return _quote_step(CARRIERS[index + 1])

    return route


async def _choose(state: WorkflowState) -> dict[str, Any]:
    quotes = sorted(_quotes(state), key=lambda q: (q["cost"], q["days"]))
    if not quotes:
        reason = "no carrier quoted: " + tool_failure_reason(*map(_quote_step, CARRIERS))(state)
        return {
            "outcome": "failed",
            "error": reason,
            "output": {},
            "history": [entry("choose_route", "failed", reason)],
        }
    best = quotes[0]
    booking = RerouteBookingAction(
        shipment_id=state["fields"]["shipment_id"],
        carrier=best["carrier"],
        quote_id=best["quote_id"],
        cost=best["cost"],
        days=best["days"],
        cost_increase=round(best["cost"] - state["fields"]["baseline_cost"], 2),
    )
    return {
        "proposed_action": booking.model_dump(mode="json"),
        "output": {"quotes": quotes},
        "history": [entry("choose_route", "chosen", f"{best['carrier']} at {best['cost']:g}")],
    }


async def _finish(state: WorkflowState) -> dict[str, Any]:
    booking = state["proposed_action"] or {}
    booked = tool_result(state, "book")
    output = RerouteOutput(
        booking_id=booked["booking_id"],
        carrier=booking["carrier"],
        cost=booking["cost"],
        days=booking["days"],
        cost_increase=booking["cost_increase"],
        quotes=state.get("output", {}).get("quotes", []),
        approval=state.get("approval") or {},
    )
    return {"outcome": "succeeded", "output": output.model_dump(), "error": None}


def build(policy: GatePolicy, reasoning: Reasoning | None = None) -> StateGraph[WorkflowState]:
    """validate → quote (primary, then the next carriers) → choose → gate → book."""
    graph = start_graph(RerouteInput, first=_quote_step(CARRIERS[0]))
    for index, carrier in enumerate(CARRIERS):
        step = _quote_step(carrier)
        graph.add_node(step, tool_step(step, "carriers.quote", _quote_arguments(carrier)))
        following = [_quote_step(c) for c in CARRIERS[index + 1 : index + 2]]
        graph.add_conditional_edges(step, _after_quote(index), ["choose_route", *following])
    graph.add_node("choose_route", _choose)
    unless_ended(graph, "choose_route", "approve_booking")
    add_gated_action(
        graph,
        workflow=NAME,
        policy=policy,
        gate="approve_booking",
        action_type="reroute_booking.v1",
        step="book",
        tool="carriers.book",
        arguments=action_fields("carrier", "shipment_id", "quote_id", "cost"),
        finish=_finish,
    )
    return graph


WORKFLOW = WorkflowDefinition(
    name=NAME,
    description="Quote alternative routes for a disrupted shipment, approve costly ones, book.",
    input_model=RerouteInput,
    output_model=RerouteOutput,
    build=build,
)
