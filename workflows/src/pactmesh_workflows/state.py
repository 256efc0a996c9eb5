"""The state every workflow graph carries, and what a graph pauses on."""

from __future__ import annotations

import operator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict


class WorkflowState(TypedDict, total=False):
    """Checkpointed state of one workflow run (JSON-serialisable values only)."""

    workflow: str
    tenant: str
    """Whose request this is: the semantic cache is per tenant."""
    text: str
    fields: dict[str, Any]
    metadata: dict[str, Any]
    confidence: float
    """Routing's confidence in this workflow."""
    needs_human: bool
    """Routing would not guess: the workflow hands the request to a person."""
    tool_results: dict[str, Any]
    """Step name to what the tool returned (or how it failed); retries overwrite."""
    proposed_action: dict[str, Any] | None
    """The action a gate reviews and the final step executes."""
    approval: dict[str, Any] | None
    """How the last gate was passed: decision, rule, reviewer."""
    cached: dict[str, Any] | None
    """What the semantic cache answered (looked up once, in a node, so replays agree)."""
    output: dict[str, Any]
    outcome: Literal["succeeded", "failed", "rejected"]
    error: str | None
    steps: int
    history: Annotated[list[dict[str, Any]], operator.add]
    """Every step, failure, recovery and decision, in order (appended, never rewritten)."""


def entry(step: str, event: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    """One history entry."""
    return {
        "at": datetime.now(UTC).isoformat(),
        "step": step,
        "event": event,
        "detail": detail,
        **extra,
    }


class ToolRequest(BaseModel):
    """What a graph hands to ``interrupt()`` when it needs a tool: the engine publishes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["tool"] = "tool"
    step: str
    """The graph step asking; names the call (a retry is another step)."""
    tool: str
    arguments: dict[str, Any]
    idempotency_scope: str
    """With the workflow id, the idempotency key: a retry of a side effect reuses it."""


class ToolAnswer(BaseModel):
    """What a paused graph is resumed with: a tool's result or its failure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    result: dict[str, Any] = {}
    error_code: str | None = None
    message: str = ""
    retryable: bool = False


class ReviewRequest(BaseModel):
    """What a graph hands to ``interrupt()`` at an approval gate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["review"] = "review"
    step: str
    attempt: int
    """0 for the first request, 1 after an escalation."""
    rule: str
    summary: str
    action_type: str
    proposed_action: dict[str, Any]
    required_role: str
    expires_at: str
    """ISO-8601; fixed when the gate first fires, so re-publishing repeats it."""
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    """The gate's priority (``ReviewPriority``); defaulted so older checkpoints load."""


class ReviewAnswer(BaseModel):
    """What a paused gate is resumed with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision: Literal["approve", "reject", "edit", "expire"]
    edited_action: dict[str, Any] | None = None
    reviewer: str
    comment: str = ""
