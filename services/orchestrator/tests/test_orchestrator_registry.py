"""The workflow registry discovers every module that exports ``WORKFLOW``."""

from __future__ import annotations

from pathlib import Path

import pytest
from pactmesh_contracts.topics import WORKFLOWS
from pactmesh_orchestrator.domain.registry import WorkflowDefinition, discover


def test_discovers_exactly_the_four_workflows() -> None:
    found = discover()
    assert set(found) == {"support-triage", "procurement", "supply-chain-reroute", "refund"}
    assert set(found) == set(WORKFLOWS)
    assert all(isinstance(d, WorkflowDefinition) and d.name == n for n, d in found.items())


def test_every_workflow_builds_a_graph_that_compiles() -> None:
    for name, definition in discover().items():
        graph = definition.build().compile()
        assert {"finish", "failed"} <= set(graph.nodes), name


def _package(root: Path, name: str, modules: dict[str, str]) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    for module, workflow in modules.items():
        (root / name / f"{module}.py").write_text(
            "from pactmesh_orchestrator.domain.registry import WorkflowDefinition\n"
            f"WORKFLOW = WorkflowDefinition(name={workflow!r}, description='', build=list)\n"
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
