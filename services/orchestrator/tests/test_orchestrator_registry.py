"""The workflow registry discovers every module that exports ``WORKFLOW``."""

from __future__ import annotations

from pathlib import Path

import pytest
from langgraph.graph import START
from pactmesh_contracts.topics import WORKFLOWS
from pactmesh_orchestrator.domain.policy import GatePolicy
from pactmesh_orchestrator.domain.registry import WorkflowDefinition, discover
from pydantic import BaseModel


def test_discovers_exactly_the_four_workflows() -> None:
    found = discover()
    assert set(found) == {"support-triage", "procurement", "supply-chain-reroute", "refund"}
    assert set(found) == set(WORKFLOWS)
    assert all(isinstance(d, WorkflowDefinition) and d.name == n for n, d in found.items())


def test_every_workflow_builds_a_graph_that_compiles() -> None:
    policy = GatePolicy.load()
    for name, definition in discover().items():
        builder = definition.build(policy)
        builder.compile()
        # the input contract is checked before anything else runs
        assert (START, "validate_input") in builder.edges, name
        assert issubclass(definition.input_model, BaseModel), name
        assert issubclass(definition.output_model, BaseModel), name


def test_every_gate_of_the_default_policy_guards_a_step_of_its_workflow() -> None:
    """A gate naming a step that does not exist would never fire: a silent hole."""
    policy, workflows = GatePolicy.load(), discover()
    for gate in policy.gates:
        assert gate.workflow in workflows, gate.rule
        nodes = workflows[gate.workflow].build(policy).compile().nodes
        assert gate.step in nodes, gate.rule


def _package(root: Path, name: str, modules: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for module, workflow in modules.items():
        (root / name / f"{module}.py").write_text(
            "from pactmesh_orchestrator.domain.registry import WorkflowDefinition\n"
            "from pydantic import BaseModel\n"
            f"WORKFLOW = WorkflowDefinition(name={workflow!r}, description='',"
            " input_model=BaseModel, output_model=BaseModel, build=list)\n"
            if workflow
            else "HELPER = 1\n"
        )


def test_modules_without_a_workflow_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(tmp_path, "flows_ok", {"one": "alpha", "helpers": ""})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list(discover("flows_ok")) == ["alpha"]


def test_a_name_defined_twice_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package(tmp_path, "flows_dup", {"one": "alpha", "two": "alpha"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="'alpha' is defined twice"):
        discover("flows_dup")
