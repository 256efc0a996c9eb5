"""The approval-gate policy engine: what a workflow declares, what the policy file sets.

A workflow declares each gate (``GateSpec``): the step it guards, the rule it enforces,
the conditions on the proposed action (and on facts the workflow looked up) that make
it fire, and what a reviewer's decision means. The policy file (``gates.toml``) sets
per gate who decides, how long they have, what happens on expiry, the review's priority
and the thresholds the conditions compare against: numbers, never logic. ``Gate`` is a
declaration bound to its settings; every gate of every workflow is evaluated by
``Gate.verdict``.

Gates fail closed: a gate whose conditions read a value that is missing (or that cannot
be compared) fires, so a proposal without an amount is reviewed, never waved through.
"""

from __future__ import annotations

import json
import operator
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Self

from pactmesh_contracts.actions import Action
from pactmesh_contracts.events import ReviewPriority
from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

DEFAULT_POLICY = "gates.toml"
"""The packaged policy of the packaged workflows (``pactmesh_workflows/gates.toml``)."""

Op = Literal["gt", "gte", "lt", "lte", "eq", "ne", "in"]
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
    "eq": operator.eq,
    "ne": operator.ne,
    "in": lambda a, b: a in b,
}


class GatePolicyError(ValueError):
    """The policy file and the declared gates do not fit together."""

    code = "gate_policy_invalid"


class Threshold(BaseModel):
    """A number the policy file sets for the gate (``thresholds.<name>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: str


class Ref(BaseModel):
    """Another value the gate reads: a field of the action or a fact the workflow supplies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: str


class Condition(BaseModel):
    """``<field> <op> <value>``: ``amount gt threshold:max_amount``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    field: str
    op: Op
    value: Threshold | Ref | JsonValue
    says: str = ""
    """Why the gate stops the action when this holds, formatted with the values read and
    the thresholds: ``"amount {amount:g} exceeds the order total {order_total:g}"``."""

    @property
    def reads(self) -> tuple[str, ...]:
        """The values this condition reads."""
        return (self.field, self.value.ref) if isinstance(self.value, Ref) else (self.field,)

    def holds(self, values: Mapping[str, Any], thresholds: Mapping[str, Any]) -> bool:
        """Whether it holds; a comparison that cannot be made holds (fails closed)."""
        if isinstance(self.value, Threshold):
            other = thresholds[self.value.threshold]
        elif isinstance(self.value, Ref):
            other = values[self.value.ref]
        else:
            other = self.value
        try:
            return bool(_OPS[self.op](values[self.field], other))
        except TypeError:
            return True

    def reason(self, values: Mapping[str, Any], thresholds: Mapping[str, Any]) -> str:
        """``says`` filled in, or the comparison written out."""
        if self.says:
            try:
                return self.says.format(**{**thresholds, **values})
            except (KeyError, ValueError, TypeError):
                pass  # a value that does not fit the template: say it plainly
        if isinstance(self.value, Threshold):
            other = f"{self.value.threshold} {thresholds[self.value.threshold]!r}"
        elif isinstance(self.value, Ref):
            other = f"{self.value.ref} {values[self.value.ref]!r}"
        else:
            other = repr(self.value)
        return f"{self.field} {values[self.field]!r} {self.op} {other}"


class GateSpec(BaseModel):
    """One gate, as its workflow declares it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: str
    """Names the gate everywhere: the policy file's table, the review, the audit."""
    step: str
    """The graph step that evaluates the gate."""
    summary: str
    """What the reviewer is asked; ``{reason}`` is replaced by why the gate fired."""
    action: type[Action]
    """The contract of the action the gate reviews (and an edit must satisfy)."""
    when: tuple[Condition, ...] = ()
    """What makes the gate fire; none: it always does."""
    missing: dict[str, str] = Field(default_factory=dict)
    """Why a value a condition reads may be missing, by name: said instead of
    ``<name> is missing`` when the gate fires for it."""
    match: Literal["all", "any"] = "all"
    kind: Literal["approval", "policy"] = "approval"
    """``approval``: the action may go ahead once a reviewer approves it (or an edit of
    it). ``policy``: the action breaks a policy, so approving it as it is never lets it
    through; only an edit that the gate no longer stops does."""
    fixed: dict[str, str] = Field(default_factory=dict)
    """For ``policy`` gates: fields an edit may not change, each with what it names
    ("order_id": "the order"); changing one rejects the edit."""
    refusal: str = "{reason}"
    """For ``policy`` gates: the run's error when the action is not carried out."""

    @property
    def action_type(self) -> str:
        """The tag of the action the gate reviews."""
        tag: str = self.action.model_fields["action_type"].default
        return tag

    def validate_edit(self, data: Mapping[str, Any]) -> Action:
        """A reviewer's edit, validated against the action's contract (as JSON, where
        it came from); raises ``ValidationError``."""
        return self.action.model_validate_json(json.dumps(dict(data)))

    @property
    def reads(self) -> tuple[str, ...]:
        """Every value the conditions read: missing ones make the gate fire."""
        return tuple(dict.fromkeys(name for c in self.when for name in c.reads))

    @property
    def thresholds(self) -> frozenset[str]:
        """The thresholds the policy file must set for this gate."""
        return frozenset(c.value.threshold for c in self.when if isinstance(c.value, Threshold))


class GateSettings(BaseModel):
    """One gate's settings in the policy file: ``[gates."<rule>"]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    approver_role: str
    timeout_s: float = Field(gt=0)
    on_expiry: Literal["reject", "escalate"]
    escalate_to: str | None = None
    priority: ReviewPriority = ReviewPriority.NORMAL
    """How urgently reviewers should take it up (hitl filters their queue by it)."""
    separation_of_duties: bool = True
    """Whoever the run acts for may not decide its reviews, whatever roles they hold
    (hitl refuses their decision, and the orchestrator refuses it again)."""
    thresholds: dict[str, JsonValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _escalation_has_a_target(self) -> Self:
        if self.on_expiry == "escalate" and not self.escalate_to:
            raise ValueError("on_expiry = escalate needs escalate_to")
        return self


@dataclass(frozen=True)
class Gate:
    """A declared gate with its settings: what a graph step evaluates and asks."""

    spec: GateSpec
    settings: GateSettings

    @property
    def rule(self) -> str:
        """The gate's rule."""
        return self.spec.rule

    def verdict(self, values: Mapping[str, Any]) -> str | None:
        """Why the gate stops ``values`` (the action's fields and the workflow's facts),
        or None when it lets them pass. A missing value stops them."""
        missing = [name for name in self.spec.reads if values.get(name) is None]
        if missing:
            return "; ".join(self.spec.missing.get(n, f"{n} is missing") for n in missing)
        if not self.spec.when:
            return ""
        thresholds = self.settings.thresholds
        holding = [c for c in self.spec.when if c.holds(values, thresholds)]
        if self.spec.match == "any" and holding:
            return holding[0].reason(values, thresholds)
        if self.spec.match == "all" and len(holding) == len(self.spec.when):
            return "; ".join(c.reason(values, thresholds) for c in holding)
        return None

    def role(self, attempt: int) -> str:
        """Who decides the ``attempt``-th request (1: after an escalation)."""
        if attempt == 0:
            return self.settings.approver_role
        return self.settings.escalate_to or self.settings.approver_role


class GatePolicy(BaseModel):
    """Every gate's settings, loaded from a TOML file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gates: dict[str, GateSettings] = Field(default_factory=dict)

    def bind(self, spec: GateSpec) -> Gate:
        """``spec`` with its settings; a gate the file does not set, or a threshold it
        leaves out, is refused: a gate without a decider would be a silent hole."""
        settings = self.gates.get(spec.rule)
        if settings is None:
            raise GatePolicyError(f"the gate policy sets nothing for gate {spec.rule!r}")
        missing = spec.thresholds - settings.thresholds.keys()
        if missing:
            raise GatePolicyError(f"gate {spec.rule!r} needs thresholds {sorted(missing)}")
        return Gate(spec, settings)

    def check(self, specs: Iterable[GateSpec]) -> None:
        """Every declared gate is set, and every setting names a declared gate (a typo
        in the file would otherwise configure nothing)."""
        declared = [self.bind(spec).rule for spec in specs]
        unknown = sorted(self.gates.keys() - set(declared))
        if unknown:
            raise GatePolicyError(f"the gate policy sets undeclared gates {unknown}")

    @classmethod
    def load(cls, path: Path | None = None) -> GatePolicy:
        """The policy at ``path``, or the packaged default."""
        if path is None:
            text = resources.files("pactmesh_workflows").joinpath(DEFAULT_POLICY).read_text()
        else:
            text = path.read_text()
        return cls.model_validate(tomllib.loads(text))
