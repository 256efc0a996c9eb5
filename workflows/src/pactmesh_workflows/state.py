"""The state every workflow graph carries, what a graph pauses on, and its format.

State is a ``TypedDict`` (plain dicts at run time, checked by mypy): LangGraph copies and
checkpoints it at every step, so it stays JSON values, never models. A pause is a
contract event, discriminated by its literal ``type``: ``ToolCallRequested`` or
``ReviewRequested``, exactly as the engine publishes it; a paused graph is resumed with
the answering event's payload (``ToolCallCompleted``/``ToolCallFailed``, ``ReviewDecided``).

Checkpoints carry ``format`` (``FORMAT_VERSION``). Format 0, before it, had no version,
paused on ``{"kind": "tool" | "review", ...}`` dicts that lacked the ids and was resumed
with answer dicts of its own; ``pause_of`` reads both, so runs paused before the change
resume and finish (``test_orchestrator_checkpoint_format`` loads such a checkpoint).
"""

from __future__ import annotations

import json
import operator
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from pactmesh_contracts.events import (
    ReviewDecided,
    ReviewPriority,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
)
from pydantic import Field, JsonValue, TypeAdapter

FORMAT_VERSION = 1
"""The format of the state and pauses this code writes (0: before formats were versioned)."""

_CALL_NAMESPACE = uuid.UUID("5b0f3c4e-8e1a-4f7e-9a59-4f1b0c1d2e3f")
_REVIEW_NAMESPACE = uuid.UUID("0e8b2f5a-3c1d-4e6f-8a9b-7c6d5e4f3a2b")

Outcome = Literal["succeeded", "failed", "rejected"]
Decision = Literal["not_required", "approve", "edit", "rejected"]


class ToolOutcome(TypedDict):
    """What one tool call came to, kept under its step's name."""

    ok: bool
    result: dict[str, JsonValue]
    """The tool's result (validated against its contract by the tools service)."""
    error_code: str | None
    message: str
    retryable: bool


class Approval(TypedDict):
    """How the last gate was passed (or not)."""

    decision: Decision
    rule: NotRequired[str]
    reviewer: NotRequired[str]
    comment: NotRequired[str]


class HistoryEntry(TypedDict):
    """One step, failure, recovery or decision."""

    at: str
    step: str
    event: str
    detail: str
    role: NotRequired[str]
    """For a review asked: who must decide."""
    before: NotRequired[dict[str, JsonValue]]
    """For an edit: the action as proposed."""
    after: NotRequired[dict[str, JsonValue]]
    """For an edit: the action as the reviewer changed it."""


class CacheHit(TypedDict):
    """What the semantic cache answered."""

    matched_question: str
    similarity: float


class WorkflowState(TypedDict, total=False):
    """Checkpointed state of one workflow run (JSON values only). Total=False: a node
    returns only the keys it changes, and mypy checks those."""

    format: int
    """``FORMAT_VERSION`` of the run's state; absent in format 0."""
    workflow: str
    tenant: str
    """Whose request this is: the semantic cache is per tenant, and an event resuming
    the run must be of this tenant."""
    requester: dict[str, JsonValue]
    """The principal the run acts for, as intake verified it (``subject``, ``roles``,
    ``scopes``): the one an event resuming the run must act for, and the one person who
    may not decide the run's reviews. Absent in runs started before it was recorded."""
    pause_key: str
    """Random, set when the run starts: the ids of its tool calls and reviews derive from
    it (``call_id_for``, ``review_id_for``), so nobody outside the mesh can guess one,
    while a replayed step asks again with the same id. Absent in runs started before it
    existed, whose ids derive from the run's id alone."""
    text: str
    fields: dict[str, JsonValue]
    metadata: dict[str, str]
    """The request's metadata, handed back with its result."""
    confidence: float
    """Routing's confidence in this workflow."""
    needs_human: bool
    """Routing would not guess: the workflow hands the request to a person."""
    tool_results: dict[str, ToolOutcome]
    """Step name to what the tool returned (or how it failed); retries overwrite."""
    proposed_action: dict[str, JsonValue] | None
    """The action a gate reviews and the final step executes."""
    approval: Approval | None
    cached: CacheHit | None
    """What the semantic cache answered (looked up once, in a node, so replays agree)."""
    output: dict[str, Any]
    outcome: Outcome
    error: str | None
    steps: int
    usage: dict[str, JsonValue]
    """What the request's model calls spent so far (``pactmesh_contracts.usage.Usage``):
    routing's, then the workflow's own; a model call is not made once the tenant's
    per-request budget is reached."""
    history: Annotated[list[HistoryEntry], operator.add]
    """Every step, failure, recovery and decision, in order (appended, never rewritten)."""


def entry(
    step: str,
    event: str,
    detail: str = "",
    *,
    role: str | None = None,
    before: dict[str, JsonValue] | None = None,
    after: dict[str, JsonValue] | None = None,
) -> HistoryEntry:
    """One history entry."""
    found = HistoryEntry(at=datetime.now(UTC).isoformat(), step=step, event=event, detail=detail)
    if role is not None:
        found["role"] = role
    if before is not None and after is not None:
        found["before"], found["after"] = before, after
    return found


def outcome_of(answer: ToolCallCompleted | ToolCallFailed) -> ToolOutcome:
    """The state's record of a tool's answer."""
    if isinstance(answer, ToolCallCompleted):
        return ToolOutcome(
            ok=True, result=dict(answer.result), error_code=None, message="", retryable=False
        )
    return ToolOutcome(
        ok=False,
        result={},
        error_code=answer.error_code.value,
        message=answer.message,
        retryable=answer.retryable,
    )


# -- pauses ---------------------------------------------------------------------------

Pause = Annotated[ToolCallRequested | ReviewRequested, Field(discriminator="type")]
"""What a graph waits for: a tool's answer or a reviewer's decision."""
PAUSES: TypeAdapter[ToolCallRequested | ReviewRequested] = TypeAdapter(Pause)
TOOL_ANSWERS: TypeAdapter[ToolCallCompleted | ToolCallFailed] = TypeAdapter(
    Annotated[ToolCallCompleted | ToolCallFailed, Field(discriminator="type")]
)
"""What a tool step is resumed with."""


def new_pause_key() -> str:
    """A run's ``pause_key``: 122 random bits."""
    return str(uuid.uuid4())


def call_id_for(workflow_id: uuid.UUID, step: str, key: str | None = None) -> uuid.UUID:
    """The same call id for the same step of the same run, however often it is asked.

    Derived from the run's random ``key``, so it cannot be guessed from the run's id (a
    run without one, started before keys existed, keeps format 0's derivation)."""
    if key is None:
        return uuid.uuid5(_CALL_NAMESPACE, f"{workflow_id}:{step}")
    return uuid.uuid5(uuid.UUID(key), f"call:{step}")


def review_id_for(
    workflow_id: uuid.UUID, step: str, attempt: int, key: str | None = None
) -> uuid.UUID:
    """The same review id for the same gate and attempt of the same run; unguessable as
    ``call_id_for``'s are."""
    if key is None:
        return uuid.uuid5(_REVIEW_NAMESPACE, f"{workflow_id}:{step}:{attempt}")
    return uuid.uuid5(uuid.UUID(key), f"review:{step}:{attempt}")


MAX_REVIEW_ATTEMPTS = 2
"""A gate asks at most twice: once, and once more after an escalation."""


def pause_ids(workflow_id: uuid.UUID, steps: Iterable[str], key: str | None) -> set[uuid.UUID]:
    """Every id a run with ``steps`` could ever pause on: what a genuine (possibly late
    or redelivered) answer to one of its pauses names."""
    ids: set[uuid.UUID] = set()
    for step in steps:
        ids.add(call_id_for(workflow_id, step, key))
        ids.update(review_id_for(workflow_id, step, a, key) for a in range(MAX_REVIEW_ATTEMPTS))
    return ids


PAUSED_AT = "paused_at"
"""Key of an interrupt's value holding the W3C ``traceparent`` of the span that paused,
so the segment that resumes it (hours later, in another trace) can link to it. Not part
of the pause's contract: ``pause_of`` leaves it out."""


def pause_of(
    value: Any, *, workflow_id: uuid.UUID, workflow: str
) -> ToolCallRequested | ReviewRequested:
    """The pause an interrupt holds, in this format whatever format wrote it."""
    if isinstance(value, dict) and "kind" in value:
        return _format_0_pause(value, workflow_id=workflow_id, workflow=workflow)
    if isinstance(value, dict) and PAUSED_AT in value:
        value = {k: v for k, v in value.items() if k != PAUSED_AT}
    return PAUSES.validate_json(json.dumps(value))  # JSON as stored: strict contracts accept it


def paused_at(value: Any) -> str | None:
    """The ``traceparent`` stored with a pause, if its step stored one."""
    found = value.get(PAUSED_AT) if isinstance(value, dict) else None
    return found if isinstance(found, str) else None


def pause_id(pause: ToolCallRequested | ReviewRequested) -> uuid.UUID:
    """The id an answer to ``pause`` carries: its call id or its review id."""
    return pause.call_id if isinstance(pause, ToolCallRequested) else pause.review_id


def _format_0_pause(
    value: dict[str, Any], *, workflow_id: uuid.UUID, workflow: str
) -> ToolCallRequested | ReviewRequested:
    """Format 0's ``{"kind": ...}`` pause as the event it stood for (ids derived as
    format 0's engine derived them, so answers already in flight still match)."""
    if value["kind"] == "tool":
        return ToolCallRequested(
            call_id=call_id_for(workflow_id, value["step"]),
            tool=value["tool"],
            arguments=value["arguments"],
            idempotency_key=f"{workflow_id}:{value['idempotency_scope']}",
            workflow=workflow,
        )
    return ReviewRequested(
        review_id=review_id_for(workflow_id, value["step"], value["attempt"]),
        workflow=workflow,
        rule=value["rule"],
        summary=value["summary"],
        action_type=value["action_type"],
        proposed_action=value["proposed_action"],
        required_role=value["required_role"],
        expires_at=datetime.fromisoformat(value["expires_at"]),
        attempt=value["attempt"],
        priority=ReviewPriority(value.get("priority", "normal")),
    )


def tool_answer_of(value: Any, asked: ToolCallRequested) -> ToolCallCompleted | ToolCallFailed:
    """What a tool step was resumed with, in this format whatever format wrote it
    (format 0: ``{"ok", "result", "error_code", "message", "retryable"}``)."""
    if isinstance(value, dict) and "type" not in value and "ok" in value:
        if value["ok"]:
            return ToolCallCompleted(
                call_id=asked.call_id, tool=asked.tool, result=value["result"], duration_ms=0
            )
        return ToolCallFailed(
            call_id=asked.call_id,
            tool=asked.tool,
            error_code=ToolErrorCode(value["error_code"]),
            message=value["message"],
            retryable=value["retryable"],
        )
    return TOOL_ANSWERS.validate_json(json.dumps(value))


def review_answer_of(value: Any, asked: ReviewRequested) -> ReviewDecided:
    """What a gate was resumed with, in this format whatever format wrote it (format 0:
    ``{"decision", "edited_action", "reviewer", "comment"}``)."""
    if isinstance(value, dict) and "type" not in value:
        value = {**value, "review_id": str(asked.review_id)}
    return ReviewDecided.model_validate_json(json.dumps(value))


def expiry(timeout_s: float) -> datetime:
    """When a review asked now expires."""
    return datetime.now(UTC) + timedelta(seconds=timeout_s)
