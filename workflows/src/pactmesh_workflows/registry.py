"""The registry of workflows: every subpackage of ``pactmesh_workflows`` that exports
``WORKFLOW`` is one, so adding a workflow means adding a package.

What the rest of the mesh knows about workflows is derived from here: routing's schema,
prompt, keywords, fields and examples; the result topics; which tools a workflow may
use; which contract a reviewer's edit must satisfy.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections.abc import Iterator, Mapping
from functools import cache, cached_property
from typing import Any

from pactmesh_contracts.actions import Action
from pactmesh_contracts.tools import ToolContract
from pactmesh_contracts.topics import MESH_TOPICS, Topic, result_topic

from pactmesh_workflows.definition import WorkflowDefinition
from pactmesh_workflows.fields import RoutingField
from pactmesh_workflows.gates import GateSpec

PACKAGE = "pactmesh_workflows"


class Registry(Mapping[str, WorkflowDefinition]):
    """The workflows by name, in the order their packages sort."""

    def __init__(self, definitions: list[WorkflowDefinition]) -> None:
        found: dict[str, WorkflowDefinition] = {}
        for definition in definitions:
            if definition.name in found:
                raise ValueError(f"workflow {definition.name!r} is defined twice")
            found[definition.name] = definition
        self._definitions = found

    def __getitem__(self, name: str) -> WorkflowDefinition:
        return self._definitions[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._definitions)

    def __len__(self) -> int:
        return len(self._definitions)

    @property
    def names(self) -> tuple[str, ...]:
        """Every workflow's name."""
        return tuple(self._definitions)

    @property
    def human_triage(self) -> WorkflowDefinition:
        """The workflow where a person triages what routing will not guess."""
        found = [d for d in self.values() if d.human_triage]
        if len(found) != 1:
            raise LookupError(f"{len(found)} workflows say they handle human triage, not 1")
        return found[0]

    @cached_property
    def actions(self) -> dict[str, type[Action]]:
        """Every action contract a workflow proposes, by its tag."""
        found: dict[str, type[Action]] = {}
        for definition in self.values():
            for model in definition.actions:
                found.setdefault(model.model_fields["action_type"].default, model)
        return found

    def validate_action(self, action_type: str, data: Mapping[str, Any]) -> Action:
        """``data`` validated as the action named ``action_type`` (raises on any error).

        ``data`` comes from JSON (events, HTTP bodies), so it is validated in JSON mode:
        the models stay strict about types, yet accept what JSON can express.
        """
        model = self.actions.get(action_type)
        if model is None:
            raise LookupError(f"no action contract {action_type!r}")
        return model.model_validate_json(json.dumps(dict(data)))

    @cached_property
    def tools(self) -> tuple[ToolContract[Any, Any], ...]:
        """Every tool contract some workflow calls, each once, by name."""
        found = {t.name: t for d in self.values() for t in d.tools}
        return tuple(found[name] for name in sorted(found))

    def tools_of(self, workflow: str) -> frozenset[str]:
        """The tools ``workflow`` may call (none for a workflow not registered)."""
        definition = self._definitions.get(workflow)
        return definition.tool_names if definition else frozenset()

    @cached_property
    def fields(self) -> tuple[RoutingField, ...]:
        """Every field routing may extract, each once (two of one name must agree)."""
        found: dict[str, RoutingField] = {}
        for definition in self.values():
            for field in definition.routing.fields:
                if found.setdefault(field.name, field) != field:
                    raise ValueError(f"routing field {field.name!r} is declared differently")
        return tuple(found.values())

    @property
    def gates(self) -> tuple[GateSpec, ...]:
        """Every declared gate."""
        return tuple(g for d in self.values() for g in d.gates)

    def result_topics(self) -> tuple[Topic, ...]:
        """The result topic of each workflow, for downstream consumers."""
        return tuple(result_topic(name) for name in self.names)

    def all_topics(self) -> tuple[Topic, ...]:
        """The mesh's topics and every result topic: what a cluster must have."""
        return (*MESH_TOPICS, *self.result_topics())


def discover(package: str = PACKAGE) -> Registry:
    """Every ``WORKFLOW`` exported by a subpackage of ``package``. Modules are not
    imported: the package's own (the graph-building steps among them) need LangGraph."""
    root = importlib.import_module(package)
    definitions = []
    for info in sorted(pkgutil.iter_modules(root.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        definition = getattr(module, "WORKFLOW", None)
        if isinstance(definition, WorkflowDefinition):
            definitions.append(definition)
    return Registry(definitions)


@cache
def registry() -> Registry:
    """The packaged workflows, discovered once per process."""
    return discover()
