"""Routing accuracy on the labelled requests kept in the repository (each workflow's own,
declared with its definition, and the ones a person must triage), with the offline
model, through ``python -m pactmesh_routing.evaluate`` (the figures it writes are the
ones asserted here). The last measured figures are in docs/benchmarks.md.

The floors below leave room for float differences between machines, not for a
regression, and hold whatever workflows are registered: a workflow added to the
registry brings its examples and evaluation requests, and must not pull the others
below them.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pactmesh_routing.data import evaluation_set, examples
from pactmesh_routing.evaluate import main
from pactmesh_workflows.registry import registry

ACCURACY_FLOOR = 0.95
WORKFLOW_FLOOR = 0.90


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "routing-eval.json"
    main(["--out", str(out), "--min-confidence", "0.5"])
    figures: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return figures


def test_accuracy_on_the_labelled_requests(report: dict[str, Any]) -> None:
    assert report["model"] == "pactmesh-offline:default"
    assert report["requests"] == len(evaluation_set()) >= 100
    assert report["accuracy"] >= ACCURACY_FLOOR, report["misrouted"]
    for workflow, figures in report["per_workflow"].items():
        assert figures["accuracy"] >= WORKFLOW_FLOOR, (workflow, report["misrouted"])
    # The model's own choice, before any triage, is right on in-scope requests too: a
    # router that sent everything to support triage would not pass.
    assert report["model_accuracy_in_scope"] >= ACCURACY_FLOOR
    assert report["automated"]["accuracy"] >= ACCURACY_FLOOR
    assert report["fields_exact"] >= 0.95
    assert report["accuracy"] > report["keyword_baseline_accuracy"]


def test_requests_a_person_should_see_reach_human_triage(report: dict[str, Any]) -> None:
    flagged = report["human_flagged"]
    assert flagged["requests"] >= 10
    assert flagged["sent_to_human_triage"] >= flagged["requests"] - 1
    assert report["in_scope_sent_to_human_triage"] <= 5
    assert report["human_triage_rate"] <= 0.2


def test_the_report_holds_every_figure(report: dict[str, Any]) -> None:
    confusion = report["confusion"]
    assert set(confusion) == set(registry())
    assert sum(sum(row.values()) for row in confusion.values()) == report["requests"]
    assert report["throughput_rps"] > 0
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p95"]
    assert report["answered_by"]["pactmesh-offline:default"] >= 100


def test_the_evaluation_prints_a_readable_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    few_shot = tmp_path / "examples.jsonl"
    few_shot.write_text("".join(r.model_dump_json() + "\n" for r in examples()))
    main(["--out", str(tmp_path / "eval.json"), "--labelled", str(few_shot)])
    printed = capsys.readouterr().out
    assert printed.startswith(
        f"routing evaluation: {len(examples())} requests, pactmesh-offline:default"
    )
    assert "confusion (rows: label, columns: routed to)" in printed
    assert "requests/s" in printed
    assert f"figures written to {tmp_path / 'eval.json'}" in printed


def test_the_labelled_sets_are_large_balanced_and_held_out() -> None:
    few_shot, evaluation = examples(), evaluation_set()
    # a handful of examples per workflow: enough to recognise it, few enough to stay fast
    assert all(5 <= n <= 15 for n in Counter(r.workflow for r in few_shot).values())
    assert len(evaluation) >= 100
    assert not {r.text for r in few_shot} & {r.text for r in evaluation}
    assert len({r.text for r in evaluation}) == len(evaluation)
    in_scope = Counter(r.workflow for r in evaluation if not r.human)
    assert set(in_scope) == set(registry())
    assert max(in_scope.values()) - min(in_scope.values()) <= 3
    human = [r for r in evaluation if r.human]
    assert len(human) >= 10
    assert {r.workflow for r in human} == {"support-triage"}
