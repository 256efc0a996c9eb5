"""supply-chain-reroute's graph: validate → quote (primary, then the next carriers) →
choose → gate → book."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pactmesh_contracts.actions.reroute import RerouteBookingAction
from pactmesh_contracts.tools.carriers import (
    CARRIERS,
    CARRIERS_BOOK,
    CARRIERS_QUOTE,
    BookArgs,
    Carrier,
    Quote,
    QuoteArgs,
)

from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.state import WorkflowState, entry
from pactmesh_workflows.steps import (
    ToolCaller,
    add_gated_action,
    branch,
    inputs,
    proposed_as,
    start_graph,
    tool_failure_reason,
    tool_ok,
    tool_result,
    tool_step,
    unless_ended,
)
from pactmesh_workflows.supply_chain_reroute import COST_INCREASE, RerouteInput, RerouteOutput

QUOTES_WANTED = 2
"""Alternatives to compare before choosing."""


def _quote_step(carrier: str) -> str:
    return f"quote_{carrier}"


def _quotes(state: WorkflowState) -> list[Quote]:
    return [
        tool_result(state, _quote_step(c), CARRIERS_QUOTE)
        for c in CARRIERS
        if tool_ok(state, _quote_step(c))
    ]


def _quote_arguments(carrier: Carrier) -> Callable[[WorkflowState], QuoteArgs]:
    def arguments(state: WorkflowState) -> QuoteArgs:
        return QuoteArgs(carrier=carrier, shipment_id=inputs(state, RerouteInput).shipment_id)

    return arguments


def _after_quote(index: int) -> Callable[[WorkflowState], str]:
    def route(state: WorkflowState) -> str:
        if len(_quotes(state)) >= QUOTES_WANTED or index + 1 == len(CARRIERS):
            return "choose_route"
        return _quote_step(CARRIERS[index + 1])

    return route


async def _choose(state: WorkflowState) -> WorkflowState:
    quotes = sorted(_quotes(state), key=lambda q: (q.cost, q.days))
    if not quotes:
        reason = "no carrier quoted: " + tool_failure_reason(*map(_quote_step, CARRIERS))(state)
        return {
            "outcome": "failed",
            "error": reason,
            "output": {},
            "history": [entry("choose_route", "failed", reason)],
        }
    best, shipment = quotes[0], inputs(state, RerouteInput)
    booking = RerouteBookingAction(
        shipment_id=shipment.shipment_id,
        carrier=best.carrier,
        quote_id=best.quote_id,
        cost=best.cost,
        days=best.days,
        cost_increase=round(best.cost - shipment.baseline_cost, 2),
    )
    return {
        "proposed_action": booking.model_dump(mode="json"),
        "output": {"quotes": [q.model_dump(mode="json") for q in quotes]},
        "history": [entry("choose_route", "chosen", f"{best.carrier} at {best.cost:g}")],
    }


def _book_arguments(state: WorkflowState) -> BookArgs:
    booking = proposed_as(state, RerouteBookingAction)
    return BookArgs(
        # The action's carrier is any carrier name; the contract checks it is one we book.
        carrier=cast(Carrier, booking.carrier),
        shipment_id=booking.shipment_id,
        quote_id=booking.quote_id,
        cost=booking.cost,
    )


async def _finish(state: WorkflowState) -> WorkflowState:
    booking = proposed_as(state, RerouteBookingAction)
    booked = tool_result(state, "book", CARRIERS_BOOK)
    output = RerouteOutput(
        booking_id=booked.booking_id,
        carrier=booking.carrier,
        cost=booking.cost,
        days=booking.days,
        cost_increase=booking.cost_increase,
        quotes=state.get("output", {}).get("quotes", []),
        approval=state.get("approval") or {},
    )
    return {"outcome": "succeeded", "output": output.model_dump(), "error": None}


def build_graph(
    *,
    checkpointer: BaseCheckpointSaver[Any] | None,
    tools: ToolCaller,
    models: Reasoning,
    gates: GatePolicy,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The reroute graph, compiled on ``checkpointer``."""
    graph = start_graph(RerouteInput, first=_quote_step(CARRIERS[0]))
    for index, carrier in enumerate(CARRIERS):
        step = _quote_step(carrier)
        arguments = _quote_arguments(cast(Carrier, carrier))
        graph.add_node(step, tool_step(step, CARRIERS_QUOTE, arguments, tools=tools))
        following = [_quote_step(c) for c in CARRIERS[index + 1 : index + 2]]
        branch(graph, step, _after_quote(index), ["choose_route", *following])
    graph.add_node("choose_route", _choose)
    unless_ended(graph, "choose_route", COST_INCREASE.step)
    add_gated_action(
        graph,
        gate=gates.bind(COST_INCREASE),
        step="book",
        contract=CARRIERS_BOOK,
        arguments=_book_arguments,
        tools=tools,
        finish=_finish,
    )
    return graph.compile(checkpointer=checkpointer)
