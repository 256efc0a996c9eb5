"""Support triage's action: a hand-over to a person."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import StringConstraints

from pactmesh_contracts.actions import Action


class TriageHandover(Action):
    """Hand a support request to a person: edit supplies the answer to send."""

    action_type: Literal["triage_handover.v1"] = "triage_handover.v1"
    question: Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
    reason: Annotated[str, StringConstraints(max_length=2_000)]
    suggested_answer: Annotated[str, StringConstraints(max_length=10_000)] | None = None
