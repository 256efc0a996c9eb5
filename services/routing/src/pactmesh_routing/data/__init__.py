"""Routing's labelled requests: the workflows' own, and the ones no workflow should get.

* few-shot examples: each workflow's definition declares its own (``Routing.examples``),
  the requests the offline model's nearest-example classifier compares each request with;
* the held-out evaluation set (no text is also an example), scored by
  ``python -m pactmesh_routing.evaluate`` and by the tests: each workflow's own
  (``Routing.evaluation``, a file in its package), and ``human_triage.jsonl`` here,
  requests that are out of scope, ambiguous or hostile, which a person must triage.

A workflow added to the registry brings its examples and evaluation records with it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pactmesh_workflows.definition import LabelledRequest
from pactmesh_workflows.registry import registry

__all__ = ["LabelledRequest", "by_workflow", "evaluation_set", "examples", "human_triage", "load"]

DATA_DIR = Path(__file__).resolve().parent
HUMAN_TRIAGE_FILE = DATA_DIR / "human_triage.jsonl"
"""JSON lines of ``{"text", "fields"}``: requests no workflow should get."""


def load(path: Path) -> list[LabelledRequest]:
    """Every record of a JSON-lines file of ``{"text", "workflow", ...}`` (blank lines
    skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [LabelledRequest.model_validate_json(line) for line in lines if line.strip()]


def examples() -> list[LabelledRequest]:
    """Every registered workflow's few-shot examples."""
    return [
        LabelledRequest(text=text, workflow=name)
        for name, definition in registry().items()
        for text in definition.routing.examples
    ]


def human_triage() -> list[LabelledRequest]:
    """Requests a person should triage, labelled with the human-triage workflow."""
    fallback = registry().human_triage.name
    lines = HUMAN_TRIAGE_FILE.read_text(encoding="utf-8").splitlines()
    return [
        LabelledRequest.model_validate({**json.loads(line), "workflow": fallback, "human": True})
        for line in lines
        if line.strip()
    ]


def evaluation_set() -> list[LabelledRequest]:
    """The held-out evaluation set: every workflow's records, then the human-triage ones."""
    own = [r for d in registry().values() for r in d.evaluation_set()]
    return own + human_triage()


def by_workflow(records: Sequence[LabelledRequest]) -> dict[str, list[str]]:
    """Texts grouped by workflow, in order: the shape ``ExampleClassifier`` takes."""
    grouped: dict[str, list[str]] = {}
    for record in records:
        grouped.setdefault(record.workflow, []).append(record.text)
    return grouped
