"""The topic registry: which event types travel on which topic.

Names here are logical (``requests.accepted``); a deployment qualifies them with a
prefix (``pactmesh.`` by default) so several meshes, or several test runs, can share
one cluster without seeing each other's messages.
"""

from __future__ import annotations

import types
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, Union, cast, get_args, get_origin

from pydantic import BaseModel, Field, TypeAdapter

from pactmesh_contracts.envelope import Envelope, Payload
from pactmesh_contracts.events import (
    AuditGateFired,
    AuditModelCalled,
    AuditRecorded,
    AuditRequestAccepted,
    AuditRequestRouted,
    AuditResultDelivered,
    AuditReviewDecided,
    AuditToolCalled,
    AuditWorkflowCompleted,
    DeadLetter,
    DeadLetterRedriven,
    RequestAccepted,
    RequestRouted,
    RequestSubmitted,
    ReviewDecided,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    WorkflowCompleted,
    WorkflowProgress,
    WorkflowResult,
    WorkflowToken,
)

KEYED_PARTITIONS = 6
"""Partitions of every topic keyed by workflow id: the most consumers a group can use."""

DEFAULT_PREFIX = "pactmesh."


@dataclass(frozen=True)
class Topic:
    """One Kafka topic and the only event types allowed on it."""

    name: str
    """Logical name, without the deployment prefix."""
    payload: Any
    """The payload type, or an annotated discriminated union of payload types."""
    description: str
    partitions: int = KEYED_PARTITIONS
    enveloped: bool = True
    """False only for the dead-letter topics, whose records are not enveloped."""
    config: tuple[tuple[str, str], ...] = ()
    """Topic-level broker settings applied at creation, for example retention."""

    def qualified(self, prefix: str = DEFAULT_PREFIX) -> str:
        """The topic's name on the cluster."""
        return f"{prefix}{self.name}"

    @cached_property
    def events(self) -> tuple[type[BaseModel], ...]:
        """The event types allowed on this topic."""
        inner = get_args(self.payload)[0] if get_origin(self.payload) is Annotated else self.payload
        if get_origin(inner) in (Union, types.UnionType):
            return tuple(get_args(inner))
        return (inner,)

    @cached_property
    def record_type(self) -> Any:
        """The type one record on this topic validates into.

        ``Envelope[X]`` is cached by pydantic per ``X`` object, so handlers annotated
        with ``Envelope[<the alias below>]`` get this very class.
        """
        return cast(Any, Envelope)[self.payload] if self.enveloped else self.payload

    @cached_property
    def adapter(self) -> TypeAdapter[Any]:
        """Validates raw bytes (``adapter.validate_json``) into ``record_type``."""
        return TypeAdapter(self.record_type)

    def accepts(self, payload_type: type[BaseModel]) -> bool:
        """Whether events of ``payload_type`` may be published on this topic."""
        return payload_type in self.events


ToolResult = Annotated[ToolCallCompleted | ToolCallFailed, Field(discriminator="type")]
"""What comes back on ``tool.results``."""
WorkflowUpdate = Annotated[WorkflowProgress | WorkflowToken, Field(discriminator="type")]
AuditEvent = Annotated[
    AuditRequestAccepted
    | AuditRequestRouted
    | AuditModelCalled
    | AuditToolCalled
    | AuditGateFired
    | AuditReviewDecided
    | AuditWorkflowCompleted
    | AuditResultDelivered
    | AuditRecorded,
    Field(discriminator="type"),
]
"""What travels on ``audit``: one typed event per step of a request (the timeline), and
the refusals the access policy records."""
"""What travels on ``workflow.progress``: status transitions and streamed tokens."""

REQUESTS_INBOUND = Topic(
    "requests.inbound",
    RequestSubmitted,
    "Raw requests published by upstream systems; intake validates them.",
)
REQUESTS_ACCEPTED = Topic(
    "requests.accepted", RequestAccepted, "Requests intake accepted, from HTTP or Kafka."
)
REQUESTS_ROUTED = Topic(
    "requests.routed", RequestRouted, "Requests with their workflow chosen by routing."
)
TOOL_CALLS = Topic("tool.calls", ToolCallRequested, "Tool invocations for the tools service.")
TOOL_RESULTS = Topic("tool.results", ToolResult, "Outcomes of tool invocations.")
REVIEWS_REQUESTED = Topic(
    "reviews.requested", ReviewRequested, "Approval gates waiting for a reviewer."
)
REVIEWS_DECIDED = Topic("reviews.decided", ReviewDecided, "Reviewers' decisions.")
WORKFLOW_PROGRESS = Topic(
    "workflow.progress",
    WorkflowUpdate,
    "Status transitions of every request, and the tokens its steps stream.",
)
WORKFLOW_COMPLETED = Topic(
    "workflow.completed", WorkflowCompleted, "Workflows the orchestrator finished."
)
AUDIT = Topic(
    "audit",
    AuditEvent,
    "Every step of every request (accepted, routed, each model and tool call, each gate "
    "and decision, completion, delivery), for the request timeline.",
)
DEAD_LETTERS = Topic(
    "dlq",
    DeadLetter,
    "Messages a consumer refused, with their original bytes and the reason.",
    enveloped=False,
)
DEAD_LETTERS_REDRIVEN = Topic(
    "dlq.redriven",
    DeadLetterRedriven,
    "Dead letters whose original was published again (pactmesh dlq redrive), keyed by "
    "the original's topic/partition/offset.",
    partitions=1,
    enveloped=False,
    config=(("cleanup.policy", "compact"),),
)

MESH_TOPICS: tuple[Topic, ...] = (
    REQUESTS_INBOUND,
    REQUESTS_ACCEPTED,
    REQUESTS_ROUTED,
    TOOL_CALLS,
    TOOL_RESULTS,
    REVIEWS_REQUESTED,
    REVIEWS_DECIDED,
    WORKFLOW_PROGRESS,
    WORKFLOW_COMPLETED,
    AUDIT,
    DEAD_LETTERS,
    DEAD_LETTERS_REDRIVEN,
)
"""Every topic but the result topics (one per registered workflow: ``result_topic``)."""

RESULTS = Topic(
    "results.{workflow}",
    WorkflowResult,
    "Results of one workflow, for downstream consumers: one topic per registered workflow.",
)
"""The result topics' pattern. Which workflows exist is said by the workflow registry
(``pactmesh_workflows``), not here: ``result_topic`` names one workflow's topic."""


def result_topic(workflow: str) -> Topic:
    """The topic downstream consumers read ``workflow``'s results from."""
    return Topic(
        f"results.{workflow}",
        WorkflowResult,
        f"Results of the {workflow} workflow, for downstream consumers.",
    )


def topic_for(payload: Payload) -> Topic:
    """The one topic (other than result topics) that carries ``payload``'s type."""
    for topic in MESH_TOPICS:
        if topic.enveloped and topic.accepts(type(payload)):
            return topic
    raise LookupError(f"no topic carries {type(payload).__name__}")
