"""What a workflow declares: the one definition its package exports as ``WORKFLOW``.

Importing a definition imports pydantic and the contracts only; its graph is named by a
dotted path and loaded on demand (``WorkflowDefinition.graph_builder``), so every
service can read the registry without LangGraph installed.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from pactmesh_contracts.actions import Action
from pactmesh_contracts.tools import ToolContract
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from pactmesh_workflows.fields import RoutingField
from pactmesh_workflows.gates import GateSpec

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")

Keyword = tuple[str, float]
"""A regular expression (matched case-insensitively) and the weight it adds."""


class LabelledRequest(BaseModel):
    """A request and what routing should make of it: routing's evaluation set."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1)
    workflow: str
    """The workflow that should handle it."""
    human: bool = False
    """Out of scope, ambiguous or hostile: a person should triage it (routing must not
    guess a workflow with confidence)."""
    fields: dict[str, JsonValue] | None = None
    """The fields routing should extract, when the record states them."""


@dataclass(frozen=True)
class Routing:
    """How routing recognises the workflow's requests and what it extracts from them."""

    description: str
    """Which requests belong here, for routing's prompt and schema."""
    examples: tuple[str, ...]
    """Few-shot examples: requests this workflow handles (never in the evaluation set)."""
    keywords: tuple[Keyword, ...]
    """Weighted patterns: the transparent half of routing's offline evidence."""
    fields: tuple[RoutingField, ...] = ()
    """What the workflow's input needs from a request."""
    evaluation: str = "routing_evaluation.jsonl"
    """Held-out labelled requests (JSON lines of ``text`` and ``fields``), a resource of
    the workflow's package: routing's accuracy is measured on them."""


@dataclass(frozen=True)
class WorkflowDefinition:
    """Everything about one workflow."""

    name: str
    description: str
    package: str
    """The workflow's package (its ``__name__``): its graph and data live there."""
    input_model: type[BaseModel]
    """What the workflow needs from routing's extracted fields; checked at start."""
    output_model: type[BaseModel]
    """What a successful run returns; checked before it is published."""
    actions: tuple[type[Action], ...]
    """The actions it proposes: a reviewer's edit must satisfy the same contract."""
    tools: tuple[ToolContract[Any, Any], ...]
    """The tools it calls: the only ones the tools service runs for it."""
    routing: Routing
    gates: tuple[GateSpec, ...] = ()
    graph: str = ""
    """``module:function`` building its graph; ``<package>.graph:build_graph`` if empty."""
    human_triage: bool = False
    """Where routing sends a request a person must triage (exactly one workflow)."""
    action_types: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"workflow name {self.name!r} is not like 'supply-chain-reroute'")
        types = tuple(a.model_fields["action_type"].default for a in self.actions)
        object.__setattr__(self, "action_types", types)
        undeclared = {g.rule: g.action_type for g in self.gates if g.action_type not in types}
        if undeclared:
            raise ValueError(f"{self.name}: gates review undeclared actions {undeclared}")
        names = [t.name for t in self.tools]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a tool is listed twice in {names}")

    @property
    def tool_names(self) -> frozenset[str]:
        """The names of the tools it may call."""
        return frozenset(t.name for t in self.tools)

    def graph_builder(self) -> Any:
        """The function building its graph, imported now (this imports LangGraph)."""
        module, _, attribute = (self.graph or f"{self.package}.graph:build_graph").partition(":")
        return getattr(importlib.import_module(module), attribute)

    def evaluation_set(self) -> list[LabelledRequest]:
        """Routing's held-out requests for this workflow (none if the file is absent)."""
        source = resources.files(self.package).joinpath(self.routing.evaluation)
        if not source.is_file():
            return []
        lines = source.read_text(encoding="utf-8").splitlines()
        return [
            LabelledRequest.model_validate({**json.loads(line), "workflow": self.name})
            for line in lines
            if line.strip()
        ]
