"""The approval-gate policy: which step pauses for whom, when, and for how long."""

from __future__ import annotations

import operator
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

from pactmesh_contracts.events import ReviewPriority
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
    "in": lambda a, b: a in b,
}


class Condition(BaseModel):
    """``<action field> <op> <value>``, for example ``amount gt 10000``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str
    op: Literal["gt", "gte", "lt", "lte", "eq", "ne", "in"]
    value: JsonValue

    def holds(self, action: dict[str, Any]) -> bool:
        """Whether the condition holds for ``action`` (a missing field never holds)."""
        if self.field not in action:
            return False
        try:
            return bool(_OPS[self.op](action[self.field], self.value))
        except TypeError:
            return False


class Gate(BaseModel):
    """One approval gate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    workflow: str
    step: str
    summary: str
    approver_role: str
    timeout_s: float = Field(gt=0)
    on_expiry: Literal["reject", "escalate"]
    escalate_to: str | None = None
    priority: ReviewPriority = ReviewPriority.NORMAL
    """How urgently reviewers should take it up (hitl filters their queue by it)."""
    when: tuple[Condition, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _escalation_has_a_target(self) -> Self:
        if self.on_expiry == "escalate" and not self.escalate_to:
            raise ValueError(f"gate {self.rule}: on_expiry=escalate needs escalate_to")
        return self

    def fires(self, action: dict[str, Any]) -> bool:
        """Whether this gate stops ``action``."""
        return all(c.holds(action) for c in self.when)


class GatePolicy(BaseModel):
    """Every gate, loaded from a TOML file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gates: tuple[Gate, ...] = ()

    def firing(self, *, workflow: str, step: str, action: dict[str, Any]) -> Gate | None:
        """The first gate of ``workflow``'s ``step`` that stops ``action``, if any."""
        for gate in self.gates:
            if gate.workflow == workflow and gate.step == step and gate.fires(action):
                return gate
        return None

    @classmethod
    def load(cls, path: Path | None = None) -> GatePolicy:
        """The policy at ``path``, or the packaged default."""
        if path is None:
            text = (
                resources.files("pactmesh_orchestrator.policy").joinpath("gates.toml").read_text()
            )
        else:
            text = path.read_text()
        return cls.model_validate(tomllib.loads(text))
