"""The workflow registry discovers every subpackage that exports ``WORKFLOW``; each
definition builds a graph whose gates guard real steps."""

from __future__ import annotations

import pkgutil
from pathlib import Path

import pactmesh_workflows
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START
from pactmesh_workflows.definition import WorkflowDefinition
from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.registry import discover, registry
from pactmesh_workflows.steps import pause_for_tool
from pydantic import BaseModel


def test_discovers_every_workflow_package() -> None:
    found = discover()
    packages = [i.name for i in pkgutil.iter_modules(pactmesh_workflows.__path__) if i.ispkg]
    assert len(found) == len(packages)
    assert {"support-triage", "procurement", "supply-chain-reroute", "refund"} <= set(found)
    assert all(isinstance(d, WorkflowDefinition) and d.name == n for n, d in found.items())
    assert registry().human_triage.name == "support-triage"


def test_every_workflow_builds_a_graph_that_compiles() -> None:
    policy = GatePolicy.load()
    for name, definition in discover().items():
        graph = definition.graph_builder()(
            checkpointer=InMemorySaver(), tools=pause_for_tool, models=Reasoning(), gates=policy
        )
        # the input contract is checked before anything else runs
        assert (START, "validate_input") in graph.builder.edges, name
        assert issubclass(definition.input_model, BaseModel), name
        assert issubclass(definition.output_model, BaseModel), name


def test_every_declared_gate_guards_a_step_of_its_workflow() -> None:
    """A gate naming a step that does not exist would never fire: a silent hole."""
    policy = GatePolicy.load()
    policy.check(registry().gates)
    for definition in registry().values():
        graph = definition.graph_builder()(
            checkpointer=None, tools=pause_for_tool, models=Reasoning(), gates=policy
        )
        for gate in definition.gates:
            assert gate.step in graph.nodes, gate.rule


def test_the_tools_of_every_workflow_are_registered_contracts() -> None:
    names = {t.name for t in registry().tools}
    for definition in registry().values():
        assert definition.tool_names <= names
        assert registry().tools_of(definition.name) == definition.tool_names
    assert registry().tools_of("teleport") == frozenset()


def _package(root: Path, name: str, workflows: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "helpers.py").write_text("WORKFLOW = 'not a package, never imported'\n")
    for package, workflow in workflows.items():
        (root / name / package).mkdir()
        (root / name / package / "__init__.py").write_text(
            "from pactmesh_workflows.definition import Routing, WorkflowDefinition\n"
            "from pydantic import BaseModel\n"
            f"WORKFLOW = WorkflowDefinition(name={workflow!r}, description='',"
            " package=__name__, input_model=BaseModel, output_model=BaseModel, actions=(),"
            " tools=(), routing=Routing(description='', examples=(), keywords=()))\n"
            if workflow
            else "HELPER = 1\n"
        )


def test_packages_without_a_workflow_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(tmp_path, "flows_ok", {"one": "alpha", "shared": ""})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(discover("flows_ok")) == ["alpha"]


def test_a_name_defined_twice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package(tmp_path, "flows_dup", {"one": "alpha", "two": "alpha"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="'alpha' is defined twice"):
        discover("flows_dup")
