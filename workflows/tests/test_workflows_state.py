"""Pauses and answers are contract events; format 0's dicts are read as the events they
stood for, so runs paused before checkpoints carried a format still resume."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from pactmesh_contracts.events import (
    ReviewDecision,
    ReviewPriority,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
)
from pactmesh_workflows.state import (
    call_id_for,
    entry,
    outcome_of,
    pause_id,
    pause_of,
    review_answer_of,
    review_id_for,
    tool_answer_of,
)

RUN = uuid.uuid4()
ASKED = ToolCallRequested(
    call_id=call_id_for(RUN, "lookup_order"),
    tool="crm.get_order",
    arguments={"order_id": "4411"},
    idempotency_key=f"{RUN}:lookup_order",
    workflow="refund",
)
REVIEW = ReviewRequested(
    review_id=review_id_for(RUN, "approve_refund", 0),
    workflow="refund",
    rule="refund.amount_over_auto_limit",
    summary="Refund above the automatic limit",
    action_type="refund.v1",
    proposed_action={"amount": 300.0},
    required_role="support-lead",
    expires_at=datetime(2030, 1, 1, tzinfo=UTC),
    priority=ReviewPriority.HIGH,
)


def test_a_pause_is_the_event_published_for_it() -> None:
    assert pause_of(ASKED.model_dump(mode="json"), workflow_id=RUN, workflow="refund") == ASKED
    assert pause_of(REVIEW.model_dump(mode="json"), workflow_id=RUN, workflow="refund") == REVIEW
    assert pause_id(ASKED) == ASKED.call_id
    assert pause_id(REVIEW) == REVIEW.review_id


def test_a_format_0_tool_pause_reads_as_its_request() -> None:
    old = {
        "kind": "tool",
        "step": "lookup_order",
        "tool": "crm.get_order",
        "arguments": {"order_id": "4411"},
        "idempotency_scope": "lookup_order",
    }
    pause = pause_of(old, workflow_id=RUN, workflow="refund")
    assert pause == ASKED


def test_a_format_0_review_pause_reads_as_its_request() -> None:
    old = {
        "kind": "review",
        "step": "approve_refund",
        "attempt": 0,
        "rule": REVIEW.rule,
        "summary": REVIEW.summary,
        "action_type": "refund.v1",
        "proposed_action": {"amount": 300.0},
        "required_role": "support-lead",
        "expires_at": "2030-01-01T00:00:00+00:00",
        "priority": "high",
    }
    assert pause_of(old, workflow_id=RUN, workflow="refund") == REVIEW
    del old["priority"]  # older still: before reviews had a priority
    assert pause_of(old, workflow_id=RUN, workflow="refund").priority is ReviewPriority.NORMAL


def test_format_0_answers_read_as_the_events_they_stood_for() -> None:
    done = tool_answer_of({"ok": True, "result": {"total": 5.0}, "error_code": None}, ASKED)
    assert isinstance(done, ToolCallCompleted)
    assert (done.call_id, done.result) == (ASKED.call_id, {"total": 5.0})
    failed = tool_answer_of(
        {"ok": False, "result": {}, "error_code": "timeout", "message": "slow", "retryable": True},
        ASKED,
    )
    assert isinstance(failed, ToolCallFailed)
    assert (failed.error_code, failed.retryable) == (ToolErrorCode.TIMEOUT, True)
    decided = review_answer_of(
        {"decision": "expire", "edited_action": None, "reviewer": "policy:expiry", "comment": ""},
        REVIEW,
    )
    assert (decided.review_id, decided.decision) == (REVIEW.review_id, ReviewDecision.EXPIRE)


def test_current_answers_are_contract_events() -> None:
    completed = ToolCallCompleted(
        call_id=ASKED.call_id, tool=ASKED.tool, result={"x": 1}, duration_ms=3
    )
    assert tool_answer_of(completed.model_dump(mode="json"), ASKED) == completed
    assert outcome_of(completed) == {
        "ok": True,
        "result": {"x": 1},
        "error_code": None,
        "message": "",
        "retryable": False,
    }


def test_a_history_entry_keeps_only_what_it_was_given() -> None:
    plain = entry("decide", "handover", "no article")
    assert set(plain) == {"at", "step", "event", "detail"}
    edited = entry("gate", "edited", "ann", before={"a": 1}, after={"a": 2})
    assert (edited["before"], edited["after"]) == ({"a": 1}, {"a": 2})
