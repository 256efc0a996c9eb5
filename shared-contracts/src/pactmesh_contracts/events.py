"""Every event type of the flow, in the order a request meets them.

Each payload carries a literal ``type`` tag ``<name>.v<N>``. Adding an optional field
keeps the version; a breaking change adds a ``v2`` class and both live until every
consumer has moved.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    NonNegativeInt,
    PositiveInt,
    StringConstraints,
)

from pactmesh_contracts.envelope import Payload, Principal, Role
from pactmesh_contracts.ids import uuid7
from pactmesh_contracts.usage import Usage

WorkflowName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{1,62}$")]
"""A registered workflow, for example ``support-triage``."""

ToolName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")]
"""A tool in the tools service's registry, namespaced by backend: ``kb.search``."""

RequestText = Annotated[str, StringConstraints(min_length=1, max_length=20_000)]
Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(max_length=64)],
        Annotated[str, StringConstraints(max_length=1024)],
    ],
    Field(max_length=50),
]
Confidence = Annotated[float, Field(ge=0.0, le=1.0)]


class RequestStatus(StrEnum):
    """Where a request stands, as reported by ``GET /v1/requests/{id}``."""

    ACCEPTED = "accepted"
    ROUTED = "routed"
    RUNNING = "running"
    WAITING_FOR_TOOL = "waiting_for_tool"
    WAITING_FOR_REVIEW = "waiting_for_review"
    COMPLETED = "completed"
    FAILED = "failed"
    DELIVERED = "delivered"

    @property
    def is_terminal(self) -> bool:
        """No later status but ``delivered`` can follow a terminal one."""
        return self in {RequestStatus.COMPLETED, RequestStatus.FAILED, RequestStatus.DELIVERED}


class Channel(StrEnum):
    """How a request reached the mesh."""

    HTTP = "http"
    KAFKA = "kafka"


# -- intake ---------------------------------------------------------------------------


class RequestSubmitted(Payload):
    """A request published by an upstream system on the inbound topic.

    The envelope's ``workflow_id`` is the upstream's request id: results carry it back.
    """

    type: Literal["request.submitted.v1"] = "request.submitted.v1"
    text: RequestText
    """The request in natural language (or a document's text)."""
    requested_workflow: WorkflowName | None = None
    """Set when the upstream already knows the workflow; routing still validates it."""
    metadata: Metadata = Field(default_factory=dict)
    """Opaque string pairs carried through to the result (for example a ticket id)."""


class RequestAccepted(Payload):
    """Intake validated a request (from HTTP or the inbound topic) and took ownership."""

    type: Literal["request.accepted.v1"] = "request.accepted.v1"
    text: RequestText
    channel: Channel
    requested_workflow: WorkflowName | None = None
    metadata: Metadata = Field(default_factory=dict)


# -- routing --------------------------------------------------------------------------


class RequestRouted(Payload):
    """Routing chose a workflow for the request and extracted that workflow's inputs."""

    type: Literal["request.routed.v1"] = "request.routed.v1"
    workflow: WorkflowName
    confidence: Confidence
    """The classifier's confidence in ``workflow``, 0 to 1."""
    reason: Annotated[str, StringConstraints(max_length=2_000)]
    """Why this workflow was chosen, recorded for audit."""
    needs_human: bool = False
    """Routing would not guess (below its threshold, an invalid model answer, a text that
    tries to instruct it): the workflow must hand the request to a person."""
    text: RequestText
    fields: dict[str, JsonValue] = Field(default_factory=dict)
    """Inputs extracted for the workflow's input contract."""
    metadata: Metadata = Field(default_factory=dict)
    usage: Usage | None = None
    """What routing's model calls for this request spent: the request's budget counts it."""


# -- tools ----------------------------------------------------------------------------


class ToolCallRequested(Payload):
    """The orchestrator asks the tools service to run one tool."""

    type: Literal["tool.call.requested.v1"] = "tool.call.requested.v1"
    call_id: uuid.UUID
    """Identifies this call; the result names it."""
    tool: ToolName
    arguments: dict[str, JsonValue]
    idempotency_key: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    """Workflow id and step: the tool layer performs a side effect at most once per key."""
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    """Overall deadline for the call, retries included."""
    workflow: WorkflowName | None = None
    """The workflow calling the tool, on behalf of the envelope's principal: the tools
    service checks the access policy against both before running it (a call naming no
    workflow is refused)."""


class ToolCallCompleted(Payload):
    """A tool call succeeded."""

    type: Literal["tool.call.completed.v1"] = "tool.call.completed.v1"
    call_id: uuid.UUID
    tool: ToolName
    result: dict[str, JsonValue]
    attempts: PositiveInt = 1
    duration_ms: NonNegativeInt


class ToolErrorCode(StrEnum):
    """Why a tool call failed; the orchestrator's recovery paths branch on it."""

    UNKNOWN_TOOL = "unknown_tool"
    INVALID_ARGUMENTS = "invalid_arguments"
    FORBIDDEN = "forbidden"
    TIMEOUT = "timeout"
    BACKEND_ERROR = "backend_error"
    CIRCUIT_OPEN = "circuit_open"


class ToolCallFailed(Payload):
    """A tool call failed after the tools service's own retries."""

    type: Literal["tool.call.failed.v1"] = "tool.call.failed.v1"
    call_id: uuid.UUID
    tool: ToolName
    error_code: ToolErrorCode
    message: Annotated[str, StringConstraints(max_length=4_000)]
    retryable: bool
    """Whether the same call may succeed later."""
    attempts: NonNegativeInt = 0


# -- human review ---------------------------------------------------------------------


class ReviewPriority(StrEnum):
    """How urgently a review needs a person (set by the gate that fired)."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class ReviewRequested(Payload):
    """A workflow paused at an approval gate and waits for a reviewer."""

    type: Literal["review.requested.v1"] = "review.requested.v1"
    review_id: uuid.UUID
    workflow: WorkflowName
    rule: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    """The policy rule that fired, for example ``procurement.amount_over_threshold``."""
    summary: Annotated[str, StringConstraints(max_length=4_000)]
    action_type: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*\.v[0-9]+$")]
    """The contract of ``proposed_action`` (``pactmesh_contracts.actions``); edits must validate."""
    proposed_action: dict[str, JsonValue]
    """The action the workflow will take if approved."""
    required_role: Role
    expires_at: AwareDatetime
    attempt: NonNegativeInt = 0
    """0 for the first request at this gate, 1 after an escalation."""
    priority: ReviewPriority = ReviewPriority.NORMAL
    """The gate's priority, for ordering and filtering reviewers' queues."""
    separation_of_duties: bool = True
    """The requester (the envelope's principal) may not decide this review, whatever
    roles they hold (the gate's setting; on unless its policy turns it off)."""


class ReviewDecision(StrEnum):
    """What a reviewer decided."""

    APPROVE = "approve"
    REJECT = "reject"
    EDIT = "edit"
    EXPIRE = "expire"


class ReviewDecided(Payload):
    """A reviewer (or the expiry policy) decided a review; the workflow resumes."""

    type: Literal["review.decided.v1"] = "review.decided.v1"
    review_id: uuid.UUID
    decision: ReviewDecision
    edited_action: dict[str, JsonValue] | None = None
    """For ``edit``: the changed action, validated against the action's contract."""
    reviewer: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    comment: Annotated[str, StringConstraints(max_length=4_000)] = ""
    decided_by: Principal | None = None
    """The reviewer as their token proved them (subject ``reviewer``, roles, scopes): the
    orchestrator checks it against the gate's role, the access policy's review actions
    and separation of duties before resuming. None only for an expiry."""


# -- workflow lifecycle ---------------------------------------------------------------


class WorkflowProgress(Payload):
    """A status transition, published by whichever service caused it."""

    type: Literal["workflow.progress.v1"] = "workflow.progress.v1"
    status: RequestStatus
    service: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    detail: Annotated[str, StringConstraints(max_length=2_000)] = ""
    workflow: WorkflowName | None = None


class WorkflowToken(Payload):
    """A piece of text a workflow step is streaming (a draft being written).

    Best-effort: a replayed step may send its tokens again; the final text is in the
    workflow's result, not in the tokens.
    """

    type: Literal["workflow.token.v1"] = "workflow.token.v1"
    seq: NonNegativeInt
    """Position of this token in its step's stream, from 0."""
    text: Annotated[str, StringConstraints(max_length=2_000)]
    step: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    """The graph step streaming, for example ``draft``."""
    final: bool
    """The step's last token: its stream is complete."""
    restarted_on: Annotated[str, StringConstraints(max_length=200)] | None = None
    """Set when the model streaming this step failed mid-answer and the next model of its
    chain starts the answer over: discard the step's text so far; this model (its spec,
    ``provider:model``) writes the tokens that follow."""


class Outcome(StrEnum):
    """How a workflow ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


class WorkflowCompleted(Payload):
    """The orchestrator finished a workflow, one way or another."""

    type: Literal["workflow.completed.v1"] = "workflow.completed.v1"
    workflow: WorkflowName
    outcome: Outcome
    output: dict[str, JsonValue] = Field(default_factory=dict)
    error: Annotated[str, StringConstraints(max_length=4_000)] | None = None
    steps: NonNegativeInt = 0
    """How many graph steps ran, recoveries included."""
    metadata: Metadata = Field(default_factory=dict)


class WorkflowResult(Payload):
    """What downstream consumers receive on ``results.<workflow>``."""

    type: Literal["workflow.result.v1"] = "workflow.result.v1"
    workflow: WorkflowName
    outcome: Outcome
    output: dict[str, JsonValue] = Field(default_factory=dict)
    error: Annotated[str, StringConstraints(max_length=4_000)] | None = None
    metadata: Metadata = Field(default_factory=dict)
    """The metadata the request was submitted with, returned unchanged."""


class AuditRecorded(Payload):
    """A state transition worth keeping for the workflow's timeline."""

    type: Literal["audit.recorded.v1"] = "audit.recorded.v1"
    service: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    action: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    detail: dict[str, JsonValue] = Field(default_factory=dict)


# -- the timeline: one typed audit event per step of a request ---------------------------

ServiceName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
LongText = Annotated[str, StringConstraints(max_length=20_000)]


class AuditRequestAccepted(Payload):
    """Intake took a request."""

    type: Literal["audit.request.accepted.v1"] = "audit.request.accepted.v1"
    channel: Channel
    text: RequestText
    requested_workflow: WorkflowName | None = None
    metadata: Metadata = Field(default_factory=dict)


class AuditRequestRouted(Payload):
    """Routing chose the request's workflow."""

    type: Literal["audit.request.routed.v1"] = "audit.request.routed.v1"
    workflow: WorkflowName
    confidence: Confidence
    reason: Annotated[str, StringConstraints(max_length=2_000)]
    needs_human: bool = False
    model: Annotated[str, StringConstraints(max_length=200)] | None = None
    """The model whose answer decided it; ``None`` when the submitter named the workflow."""
    fields: dict[str, JsonValue] = Field(default_factory=dict)


class PromptRef(BaseModel):
    """Which prompt template a model was given."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    version: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    digest: Annotated[str, StringConstraints(max_length=64)] = ""
    """The template text's hash: a change nobody versioned still shows."""


class AuditModelCalled(Payload):
    """One call to one model: the prompt, who answered, what it said, whether it held."""

    type: Literal["audit.model.called.v1"] = "audit.model.called.v1"
    service: ServiceName
    role: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    workflow: WorkflowName | None = None
    """The workflow the spend counts against (routing's: the one it chose)."""
    prompt: PromptRef | None = None
    model: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    """The model asked (its spec string)."""
    response_model: Annotated[str, StringConstraints(max_length=200)] | None = None
    """The model the provider says answered."""
    attempt: PositiveInt = 1
    """1 for a first answer, 2 for a repair."""
    validation: Literal["valid", "invalid", "not_checked"] = "not_checked"
    errors: list[Annotated[str, StringConstraints(max_length=2_000)]] = Field(
        default_factory=list, max_length=50
    )
    raw_output: LongText | None = None
    """The model's answer as it came (cut at 20,000 characters)."""
    error_type: Annotated[str, StringConstraints(max_length=200)] | None = None
    """Why no answer came (``timeout``, ``rate_limited``, ``unavailable``, ...)."""
    finish_reasons: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        default_factory=list, max_length=16
    )
    usage: Usage = Field(default_factory=Usage)
    duration_ms: NonNegativeInt = 0


class AuditToolCalled(Payload):
    """One tool call: its arguments and what it returned (sensitive fields redacted)."""

    type: Literal["audit.tool.called.v1"] = "audit.tool.called.v1"
    call_id: uuid.UUID
    tool: ToolName
    arguments: dict[str, JsonValue] = Field(default_factory=dict)
    ok: bool
    result: dict[str, JsonValue] = Field(default_factory=dict)
    error_code: ToolErrorCode | None = None
    message: Annotated[str, StringConstraints(max_length=4_000)] = ""
    attempts: NonNegativeInt = 0
    duration_ms: NonNegativeInt = 0


class AuditGateFired(Payload):
    """An approval gate stopped the workflow for a person."""

    type: Literal["audit.gate.fired.v1"] = "audit.gate.fired.v1"
    review_id: uuid.UUID
    workflow: WorkflowName
    rule: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    summary: Annotated[str, StringConstraints(max_length=4_000)]
    proposed_action: dict[str, JsonValue]
    required_role: Role
    priority: ReviewPriority = ReviewPriority.NORMAL
    attempt: NonNegativeInt = 0


class AuditReviewDecided(Payload):
    """A reviewer's decision reached the workflow."""

    type: Literal["audit.review.decided.v1"] = "audit.review.decided.v1"
    review_id: uuid.UUID
    decision: ReviewDecision
    reviewer: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    comment: Annotated[str, StringConstraints(max_length=4_000)] = ""
    edited_action: dict[str, JsonValue] | None = None


class AuditWorkflowCompleted(Payload):
    """The workflow ended."""

    type: Literal["audit.workflow.completed.v1"] = "audit.workflow.completed.v1"
    workflow: WorkflowName
    outcome: Outcome
    error: Annotated[str, StringConstraints(max_length=4_000)] | None = None
    steps: NonNegativeInt = 0
    usage: Usage | None = None
    """What the request's model calls spent in all."""


class AuditResultDelivered(Payload):
    """Delivery published the result for downstream consumers."""

    type: Literal["audit.result.delivered.v1"] = "audit.result.delivered.v1"
    workflow: WorkflowName
    outcome: Outcome
    topic: Annotated[str, StringConstraints(min_length=1, max_length=249)]
    webhooks: NonNegativeInt = 0
    """Webhook deliveries queued for it."""


# -- dead letters ---------------------------------------------------------------------


DeadLetterCode = Literal["undecodable", "invalid", "unknown_type", "refused", "too_large"]
"""Why a message was refused: not JSON, against its contract, a type this topic does
not carry, refused by its handler (an unknown run, a principal the access policy does
not allow), or larger than its consumer takes (refused before it is decoded)."""


class DeadLetter(BaseModel):
    """A message a consumer could not accept, kept whole with the reason.

    Not enveloped: a dead letter may have no valid workflow id, tenant or principal.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    type: Literal["dead.letter.v1"] = "dead.letter.v1"
    dead_letter_id: uuid.UUID = Field(default_factory=uuid7)
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    service: str
    """The service whose consumer refused the message."""
    consumer_group: str | None
    source_topic: str
    source_partition: NonNegativeInt
    source_offset: NonNegativeInt
    original_key_b64: str | None
    """The original key, base64-encoded (``None`` when the message had no key)."""
    original_value_b64: str
    """The original value bytes, base64-encoded: exactly what was received (only its
    first bytes when ``original_truncated``)."""
    original_headers: dict[str, str] = Field(default_factory=dict)
    error_code: DeadLetterCode
    error: str
    """Human-readable reason, for example the validation errors (never the input)."""
    errors: list[dict[str, JsonValue]] = Field(default_factory=list)
    """Machine-readable field errors (pydantic's ``errors()``, without the input) when
    validation failed; the first few when there are many."""
    original_size: NonNegativeInt | None = None
    """Size of the original value in bytes."""
    original_sha256: str | None = None
    """Hex SHA-256 of the original value: identifies it whether kept whole or not."""
    original_truncated: bool = False
    """True when the original was too large to keep whole in a dead-letter record: the
    record holds its first bytes, and the message itself is referenced by its source
    topic, partition and offset (read from there while the topic retains it)."""

    @property
    def source_ref(self) -> str:
        """``topic/partition/offset`` of the refused message: names it uniquely."""
        return f"{self.source_topic}/{self.source_partition}/{self.source_offset}"

    def original_value(self) -> bytes:
        """The refused message's value, decoded back to its exact bytes (the first
        bytes only when ``original_truncated``)."""
        return base64.b64decode(self.original_value_b64)


class DeadLetterRedriven(BaseModel):
    """A dead letter's original message was published again on its source topic.

    Kept on a compacted topic, keyed by the source position (``DeadLetter.source_ref``),
    so that ``pactmesh dlq redrive`` never publishes the same message twice. Written in
    the same Kafka transaction as the republished message: both or neither.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    type: Literal["dead.letter.redriven.v1"] = "dead.letter.redriven.v1"
    dead_letter_id: uuid.UUID
    """The dead letter whose original was redriven (the first one, when several
    consumer groups dead-lettered the same message)."""
    source_topic: str
    source_partition: NonNegativeInt
    source_offset: NonNegativeInt
    redriven_at: AwareDatetime = Field(default_factory=lambda: datetime.now(UTC))
    redriven_by: str
    """Who ran the redrive (``user@host``)."""
