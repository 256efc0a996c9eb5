"""The topic registry: what may travel where, and that each topic's adapter reads it back."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from pactmesh_contracts.envelope import Payload, Principal, new_event
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
    Channel,
    DeadLetter,
    DeadLetterRedriven,
    Outcome,
    PromptRef,
    RequestAccepted,
    RequestRouted,
    RequestStatus,
    RequestSubmitted,
    ReviewDecided,
    ReviewDecision,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
    WorkflowCompleted,
    WorkflowProgress,
    WorkflowResult,
    WorkflowToken,
)
from pactmesh_contracts.topics import (
    AUDIT,
    DEAD_LETTERS,
    KEYED_PARTITIONS,
    MESH_TOPICS,
    REQUESTS_ACCEPTED,
    REQUESTS_INBOUND,
    REQUESTS_ROUTED,
    RESULTS,
    REVIEWS_DECIDED,
    REVIEWS_REQUESTED,
    TOOL_CALLS,
    TOOL_RESULTS,
    WORKFLOW_COMPLETED,
    WORKFLOW_PROGRESS,
    Topic,
    result_topic,
    topic_for,
)
from pactmesh_contracts.usage import Usage
from pydantic import BaseModel, ValidationError

CALL_ID = uuid.UUID("0190f0b2-0000-7000-8000-000000000001")

EXAMPLES: dict[type[BaseModel], BaseModel] = {
    RequestSubmitted: RequestSubmitted(text="refund order 4411", metadata={"ticket": "T-1"}),
    RequestAccepted: RequestAccepted(text="refund order 4411", channel=Channel.KAFKA),
    RequestRouted: RequestRouted(
        workflow="refund",
        confidence=0.75,
        reason="matched refund",
        text="refund order 4411",
        fields={"order_id": "4411", "amount": 129.0},
    ),
    ToolCallRequested: ToolCallRequested(
        call_id=CALL_ID,
        tool="crm.get_order",
        arguments={"order_id": "4411"},
        idempotency_key="wf:lookup_order",
    ),
    ToolCallCompleted: ToolCallCompleted(
        call_id=CALL_ID, tool="crm.get_order", result={"status": "shipped"}, duration_ms=3
    ),
    ToolCallFailed: ToolCallFailed(
        call_id=CALL_ID,
        tool="crm.get_order",
        error_code=ToolErrorCode.TIMEOUT,
        message="no answer",
        retryable=True,
        attempts=1,
    ),
    ReviewRequested: ReviewRequested(
        review_id=uuid.uuid4(),
        workflow="procurement",
        rule="procurement.amount_over_threshold",
        summary="PO over limit",
        action_type="purchase_order.v1",
        proposed_action={
            "vendor": "Acme Supplies",
            "items": [{"description": "laptops", "quantity": 12, "unit_price": 1000.0}],
            "amount": 12000.0,
        },
        required_role="procurement-manager",
        expires_at=datetime.now(UTC) + timedelta(days=1),
        attempt=1,
    ),
    ReviewDecided: ReviewDecided(
        review_id=uuid.uuid4(),
        decision=ReviewDecision.EDIT,
        edited_action={
            "vendor": "Acme Supplies",
            "items": [{"description": "laptops", "quantity": 10, "unit_price": 1000.0}],
            "amount": 10000.0,
        },
        reviewer="alice",
    ),
    WorkflowProgress: WorkflowProgress(
        status=RequestStatus.RUNNING, service="orchestrator", workflow="refund"
    ),
    WorkflowToken: WorkflowToken(seq=0, text="Open", step="draft", final=False),
    WorkflowCompleted: WorkflowCompleted(
        workflow="refund", outcome=Outcome.SUCCEEDED, output={"order": {"id": "4411"}}, steps=2
    ),
    WorkflowResult: WorkflowResult(
        workflow="refund", outcome=Outcome.FAILED, error="tool failed", metadata={"ticket": "T-1"}
    ),
    AuditRecorded: AuditRecorded(service="intake", action="accepted", detail={"channel": "http"}),
    AuditRequestAccepted: AuditRequestAccepted(channel=Channel.HTTP, text="Refund order 4411"),
    AuditRequestRouted: AuditRequestRouted(
        workflow="refund", confidence=0.9, reason="refund words", model="pactmesh-offline:default"
    ),
    AuditModelCalled: AuditModelCalled(
        service="routing",
        role="routing",
        prompt=PromptRef(name="routing.decision", version="1", digest="abc"),
        model="openai:gpt-4o-mini",
        response_model="gpt-4o-mini-2024-07-18",
        validation="valid",
        raw_output='{"workflow": "refund"}',
        usage=Usage(input_tokens=120, output_tokens=30, cost=0.0001),
    ),
    AuditToolCalled: AuditToolCalled(
        call_id=uuid.UUID(int=7), tool="crm.get_order", arguments={"order_id": "4411"}, ok=True
    ),
    AuditGateFired: AuditGateFired(
        review_id=uuid.UUID(int=8),
        workflow="refund",
        rule="refund.amount_over_auto_limit",
        summary="over the limit",
        proposed_action={"amount": 900},
        required_role="finance-director",
    ),
    AuditReviewDecided: AuditReviewDecided(
        review_id=uuid.UUID(int=8), decision=ReviewDecision.APPROVE, reviewer="ann", comment="ok"
    ),
    AuditWorkflowCompleted: AuditWorkflowCompleted(workflow="refund", outcome=Outcome.SUCCEEDED),
    AuditResultDelivered: AuditResultDelivered(
        workflow="refund", outcome=Outcome.SUCCEEDED, topic="results.refund"
    ),
    DeadLetter: DeadLetter(
        service="routing",
        consumer_group="pactmesh.routing.requests.accepted",
        source_topic="pactmesh.requests.accepted",
        source_partition=3,
        source_offset=17,
        original_key_b64=None,
        original_value_b64="e30=",
        error_code="invalid",
        error="bad",
    ),
    DeadLetterRedriven: DeadLetterRedriven(
        dead_letter_id=uuid.uuid4(),
        source_topic="pactmesh.requests.accepted",
        source_partition=3,
        source_offset=17,
        redriven_by="ops@host",
    ),
}


def _record(topic: Topic, payload: BaseModel) -> BaseModel:
    if not topic.enveloped:
        return payload
    assert isinstance(payload, Payload)
    return new_event(
        payload, workflow_id=uuid.uuid4(), tenant="acme", principal=Principal(subject="u")
    )


ALL_KINDS = (*MESH_TOPICS, RESULTS)
"""Every topic, the result topics as their pattern."""


def test_every_registered_event_type_has_an_example() -> None:
    registered = {event for topic in ALL_KINDS for event in topic.events}
    assert registered == set(EXAMPLES)


@pytest.mark.parametrize(
    ("topic", "event"),
    [(t, e) for t in ALL_KINDS for e in t.events],
    ids=lambda v: v.name if isinstance(v, Topic) else v.__name__,
)
def test_topic_adapter_round_trips_each_of_its_event_types(
    topic: Topic, event: type[BaseModel]
) -> None:
    record = _record(topic, EXAMPLES[event])
    decoded = topic.adapter.validate_json(record.model_dump_json())
    assert decoded == record
    assert type(decoded) is topic.record_type


@pytest.mark.parametrize("payload_type", [ToolCallCompleted, ToolCallFailed])
def test_tool_results_discriminates_completed_from_failed(payload_type: type[BaseModel]) -> None:
    record = _record(TOOL_RESULTS, EXAMPLES[payload_type])
    decoded = TOOL_RESULTS.adapter.validate_json(record.model_dump_json())
    assert type(decoded.payload) is payload_type


def test_tool_results_refuses_other_event_types_by_their_tag() -> None:
    record = json.loads(_record(TOOL_CALLS, EXAMPLES[ToolCallRequested]).model_dump_json())
    with pytest.raises(ValidationError) as caught:
        TOOL_RESULTS.adapter.validate_json(json.dumps(record))
    assert [e["type"] for e in caught.value.errors()] == ["union_tag_invalid"]


def test_topic_refuses_an_event_type_it_does_not_carry() -> None:
    record = _record(REQUESTS_ROUTED, EXAMPLES[RequestRouted])
    with pytest.raises(ValidationError):
        REQUESTS_ACCEPTED.adapter.validate_json(record.model_dump_json())


@pytest.mark.parametrize(
    ("payload_type", "expected"),
    [
        (RequestSubmitted, REQUESTS_INBOUND),
        (RequestAccepted, REQUESTS_ACCEPTED),
        (RequestRouted, REQUESTS_ROUTED),
        (ToolCallRequested, TOOL_CALLS),
        (ToolCallCompleted, TOOL_RESULTS),
        (ToolCallFailed, TOOL_RESULTS),
        (ReviewRequested, REVIEWS_REQUESTED),
        (ReviewDecided, REVIEWS_DECIDED),
        (WorkflowProgress, WORKFLOW_PROGRESS),
        (WorkflowToken, WORKFLOW_PROGRESS),
        (WorkflowCompleted, WORKFLOW_COMPLETED),
        (AuditRecorded, AUDIT),
    ],
)
def test_topic_for_picks_the_one_topic_of_a_payload(
    payload_type: type[BaseModel], expected: Topic
) -> None:
    payload = EXAMPLES[payload_type]
    assert isinstance(payload, Payload)
    assert topic_for(payload) is expected


def test_topic_for_has_no_answer_for_results_which_need_their_workflow() -> None:
    payload = EXAMPLES[WorkflowResult]
    assert isinstance(payload, Payload)
    with pytest.raises(LookupError, match="WorkflowResult"):
        topic_for(payload)


def test_no_event_type_travels_on_two_non_result_topics() -> None:
    counts = Counter(e for t in MESH_TOPICS for e in t.events)
    assert [e.__name__ for e, n in counts.items() if n > 1] == []


def test_keyed_topics_have_enough_partitions() -> None:
    keyed = [t for t in ALL_KINDS if t.enveloped]
    assert [t.name for t in ALL_KINDS if not t.enveloped] == ["dlq", "dlq.redriven"]
    assert KEYED_PARTITIONS >= 6
    assert [t.name for t in keyed if t.partitions < KEYED_PARTITIONS] == []


def test_topic_names_are_unique_and_prefix_qualified() -> None:
    names = [t.name for t in ALL_KINDS]
    assert len(names) == len(set(names))
    assert REQUESTS_ACCEPTED.qualified() == "pactmesh.requests.accepted"
    assert DEAD_LETTERS.qualified("run-42.") == "run-42.dlq"


def test_a_workflows_result_topic_follows_the_pattern() -> None:
    """Which workflows exist is the workflow registry's business (``pactmesh_workflows``)."""
    assert result_topic("refund").name == RESULTS.name.format(workflow="refund")
    assert result_topic("refund").events == RESULTS.events
    assert result_topic("refund").accepts(WorkflowResult)
    assert not result_topic("refund").accepts(WorkflowCompleted)


def test_dead_letter_topic_is_not_enveloped() -> None:
    assert DEAD_LETTERS.record_type is DeadLetter
    record = _record(DEAD_LETTERS, EXAMPLES[DeadLetter])
    assert set(json.loads(record.model_dump_json())) >= {"source_topic", "original_value_b64"}
