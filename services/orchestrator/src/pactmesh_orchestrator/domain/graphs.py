"""Building blocks for workflow graphs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from pactmesh_orchestrator.domain.state import ToolAnswer, ToolRequest, WorkflowState


class Node(Protocol):
    """A graph node: reads the state, returns the keys it changes."""

    def __call__(self, state: WorkflowState) -> Awaitable[dict[str, Any]]: ...


def tool_step(step: str, tool: str, arguments: Callable[[WorkflowState], dict[str, Any]]) -> Node:
    """A node that pauses the graph until ``tool`` answers.

    The graph holds no task while it waits: ``interrupt()`` checkpoints the state and
    returns control; the answer arrives later as an event, on any instance, and
    ``Command(resume=...)`` re-enters this node with it.
    """

    async def node(state: WorkflowState) -> dict[str, Any]:
        request = ToolRequest(step=step, tool=tool, arguments=arguments(state))
        answer = ToolAnswer.model_validate(interrupt(request.model_dump()))
        results = {**state.get("tool_results", {}), step: answer.model_dump()}
        return {"tool_results": results, "steps": state.get("steps", 0) + 1}

    node.__name__ = step
    return node


def succeeded_on(step: str) -> Callable[[WorkflowState], bool]:
    """Whether ``step``'s tool call succeeded."""

    def check(state: WorkflowState) -> bool:
        return bool(state.get("tool_results", {}).get(step, {}).get("ok"))

    return check


async def fail_with_tool_error(state: WorkflowState) -> dict[str, Any]:
    """End the workflow as failed, naming the tool error that ended it."""
    failures = [
        f"{step}: {r.get('error_code')} {r.get('message', '')}".strip()
        for step, r in state.get("tool_results", {}).items()
        if not r.get("ok")
    ]
    return {"outcome": "failed", "error": "; ".join(failures) or "tool failed", "output": {}}


def single_tool_graph(
    *,
    step: str,
    tool: str,
    arguments: Callable[[WorkflowState], dict[str, Any]],
    finish: Callable[[WorkflowState, dict[str, Any]], dict[str, Any]],
) -> StateGraph[WorkflowState]:
    """``START -> <step> -> finish | failed -> END``: one tool call, then a summary."""

    async def finish_node(state: WorkflowState) -> dict[str, Any]:
        result = state["tool_results"][step]["result"]
        return {"outcome": "succeeded", "output": finish(state, result), "error": None}

    graph: StateGraph[WorkflowState] = StateGraph(WorkflowState)
    graph.add_node(step, tool_step(step, tool, arguments))
    graph.add_node("finish", finish_node)
    graph.add_node("failed", fail_with_tool_error)
    graph.add_edge(START, step)
    graph.add_conditional_edges(step, lambda s: "finish" if succeeded_on(step)(s) else "failed")
    graph.add_edge("finish", END)
    graph.add_edge("failed", END)
    return graph
