"""Routing's labelled requests, kept in the repository as JSON lines.

* ``examples.jsonl``: the few-shot examples the offline model's nearest-example
  classifier compares each request with;
* ``labelled_requests.jsonl``: the held-out evaluation set (no text is also an example),
  scored by ``python -m pactmesh_routing.evaluate`` and by the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, JsonValue

DATA_DIR = Path(__file__).resolve().parent
EXAMPLES_FILE = DATA_DIR / "examples.jsonl"
EVALUATION_FILE = DATA_DIR / "labelled_requests.jsonl"


class LabelledRequest(BaseModel):
    """One request and where it should go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1)
    workflow: str
    """The workflow that should handle it; ``support-triage`` for anything a person
    must look at."""
    human: bool = False
    """Out of scope, ambiguous or hostile: a person should triage it (routing must not
    guess a workflow with confidence)."""
    fields: dict[str, JsonValue] | None = None
    """The fields routing should extract, when the record states them."""


def load(path: Path) -> list[LabelledRequest]:
    """Every record of a JSON-lines file (blank lines skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [LabelledRequest.model_validate_json(line) for line in lines if line.strip()]


def by_workflow(records: Sequence[LabelledRequest]) -> dict[str, list[str]]:
    """Texts grouped by workflow, in file order: the shape ``ExampleClassifier`` takes."""
    grouped: dict[str, list[str]] = {}
    for record in records:
        grouped.setdefault(record.workflow, []).append(record.text)
    return grouped
