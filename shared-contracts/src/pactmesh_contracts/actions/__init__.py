"""Actions a workflow proposes and a reviewer may approve, reject or edit.

Both sides are built to these models: the orchestrator executes only an action that
validates, and the hitl service validates a reviewer's edit against the same model
before it is accepted (so an edit can never smuggle in a field the workflow ignores).
One module per workflow's actions; which workflow proposes which action is said by the
workflow's definition (``pactmesh_workflows``), whose registry maps tags to contracts.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Money = Annotated[float, Field(ge=0, le=100_000_000)]


class Action(BaseModel):
    """Base of every action: strict, immutable, tagged."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    action_type: str
