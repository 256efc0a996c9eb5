"""``pactmesh timeline`` and ``pactmesh trace`` as text: a timeline's steps with their
detail, and a request's traces read back from the local span files, linked ones too."""

from __future__ import annotations

from pathlib import Path

from pactmesh_kit.genai import tool_span, traceparent, workflow_span
from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE, span_to_json_line
from pactmesh_kit.testing_telemetry import Spans
from pactmesh_kit.timeline_cli import read_spans, render_timeline, render_trace, request_spans

TIMELINE = {
    "request_id": "0193c0de-0000-7000-8000-000000000001",
    "tenant": "acme",
    "entries": [
        {
            "at": "2026-12-06T10:00:00.100000Z",
            "type": "audit.model.called.v1",
            "principal": "alice",
            "detail": {
                "service": "routing",
                "role": "routing",
                "workflow": "refund",
                "prompt": {"name": "routing.decision", "version": "1", "digest": "abc"},
                "model": "pactmesh-offline:default",
                "response_model": None,
                "attempt": 1,
                "validation": "valid",
                "errors": [],
                "raw_output": '{"workflow": "refund"}',
                "error_type": None,
                "finish_reasons": ["tool_calls"],
                "usage": {"input_tokens": 80, "output_tokens": 30, "cost": 0.0},
                "duration_ms": 12,
            },
        },
        {
            "at": "2026-12-06T10:00:01.000000Z",
            "type": "audit.review.decided.v1",
            "principal": "alice",
            "detail": {
                "review_id": "x",
                "decision": "approve",
                "reviewer": "sam",
                "comment": "loyal customer",
                "edited_action": None,
            },
        },
    ],
}


def test_a_timeline_prints_each_step_with_its_detail() -> None:
    text = render_timeline(TIMELINE)
    assert "model.called" in text
    assert "routing (routing.decision v1) -> pactmesh-offline:default: valid, 80+30 tokens" in text
    assert 'raw output: {"workflow": "refund"}' in text
    assert "approve by sam" in text
    assert "comment: loyal customer" in text


def test_a_requests_traces_are_read_back_from_the_span_files(tmp_path: Path) -> None:
    spans = Spans()
    tracer = spans.provider.get_tracer("t")
    request = "0193c0de-0000-7000-8000-000000000002"
    attributes = {WORKFLOW_ID_ATTRIBUTE: request}
    with workflow_span(tracer, workflow="refund", attributes=attributes):
        with tool_span(tracer, tool="crm.get_order", call_id="c1"):
            pass
        paused = traceparent()
    assert paused is not None
    with workflow_span(tracer, workflow="refund", links=[paused]):  # another trace, linked
        pass
    with workflow_span(tracer, workflow="other", attributes={WORKFLOW_ID_ATTRIBUTE: "x"}):
        pass
    (tmp_path / "orchestrator.jsonl").write_text(
        "".join(span_to_json_line(s) for s in spans.all()) + "{not json\n"
    )

    found = request_spans(read_spans(tmp_path), request)
    assert sorted(s["name"] for s in found) == [
        "execute_tool crm.get_order",
        "invoke_workflow refund",
        "invoke_workflow refund",
    ]
    text = render_trace(found)
    assert text.count("trace 0x") == 2
    assert "    execute_tool crm.get_order" in text, "a child is indented under its parent"
    assert "linked to" in text
