"""The workflow registry: every module in ``pactmesh_orchestrator.workflows`` that
exports ``WORKFLOW`` is a workflow; adding one means adding a module."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Protocol

from langgraph.graph import StateGraph
from pydantic import BaseModel

from pactmesh_orchestrator.domain.policy import GatePolicy
from pactmesh_orchestrator.domain.reasoning import Reasoning
from pactmesh_orchestrator.domain.state import WorkflowState


class Builder(Protocol):
    """Builds a workflow's graph from the gate policy and what it reasons with."""

    def __call__(
        self, policy: GatePolicy, reasoning: Reasoning | None = None
    ) -> StateGraph[WorkflowState]: ...


@dataclass(frozen=True)
class WorkflowDefinition:
    """A workflow: its contracts and how to build its (uncompiled) graph.

    ``build`` receives the gate policy (the workflow's policy hooks read it) and the
    models and cache it may use, so tests can pass their own; the checkpointer is given
    when the graph is compiled.
    """

    name: str
    description: str
    input_model: type[BaseModel]
    """What the workflow needs from routing's extracted fields; checked at start."""
    output_model: type[BaseModel]
    """What a successful run returns; checked before it is published."""
    build: Builder


def discover(package: str = "pactmesh_orchestrator.workflows") -> dict[str, WorkflowDefinition]:
    """Every ``WORKFLOW`` exported by a module of ``package``, by name."""
    found: dict[str, WorkflowDefinition] = {}
    root = importlib.import_module(package)
    for info in pkgutil.iter_modules(root.__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        definition = getattr(module, "WORKFLOW", None)
        if isinstance(definition, WorkflowDefinition):
            if definition.name in found:
                raise ValueError(f"workflow {definition.name!r} is defined twice")
            found[definition.name] = definition
    return found
