"""The registered workflows' graphs, built for the engine."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.registry import Registry, registry
from pactmesh_workflows.steps import ToolCaller, pause_for_tool

Graph = CompiledStateGraph[Any, Any, Any, Any]


def build_graphs(
    *,
    checkpointer: BaseCheckpointSaver[Any],
    gates: GatePolicy,
    models: Reasoning | None = None,
    tools: ToolCaller = pause_for_tool,
    workflows: Registry | None = None,
) -> dict[str, Graph]:
    """Every workflow's graph on ``checkpointer``, by name. The gate policy must set
    every declared gate (``GatePolicyError`` otherwise): a gate nobody may decide would
    stop its workflow forever."""
    workflows = workflows or registry()
    gates.check(workflows.gates)
    models = models or Reasoning()
    return {
        name: definition.graph_builder()(
            checkpointer=checkpointer, tools=tools, models=models, gates=gates
        )
        for name, definition in workflows.items()
    }
