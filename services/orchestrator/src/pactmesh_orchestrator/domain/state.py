"""The state every workflow graph carries, and the requests a graph pauses on."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict


class WorkflowState(TypedDict, total=False):
    """Checkpointed state of one workflow run (JSON-serialisable values only)."""

    workflow: str
    text: str
    fields: dict[str, Any]
    metadata: dict[str, Any]
    tool_results: dict[str, Any]
    """Step name to what the tool returned (or how it failed)."""
    output: dict[str, Any]
    outcome: Literal["succeeded", "failed", "rejected"]
    error: str | None
    steps: int


class ToolRequest(BaseModel):
    """What a graph hands to ``interrupt()`` when it needs a tool: the engine publishes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["tool"] = "tool"
    step: str
    """The graph step asking; with the workflow id it makes the idempotency key."""
    tool: str
    arguments: dict[str, Any]


class ToolAnswer(BaseModel):
    """What a paused graph is resumed with: a tool's result or its failure."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ok: bool
    result: dict[str, Any] = {}
    error_code: str | None = None
    message: str = ""
