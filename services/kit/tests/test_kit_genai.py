"""The GenAI-convention spans and metrics (``pactmesh_kit.genai``) and ``/metrics``,
asserted by name and attribute through the kit's shared test exporter."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pactmesh_contracts.usage import ModelPrice, PriceTable
from pactmesh_kit.app import Service
from pactmesh_kit.genai import GenAiTelemetry, tool_span, traceparent, workflow_span
from pactmesh_kit.settings import KitSettings
from pactmesh_kit.testing_telemetry import Measurements, Spans
from pydantic import SecretStr


@dataclass
class Call:
    """A model call as the reasoning layer records one."""

    role: str = "routing"
    model: str = "openai:gpt-4o-mini"
    provider: str = "openai"
    messages: Any = field(default_factory=lambda: "Where is order 4411?")
    template: Any = None
    temperature: float | None = 0.0
    max_tokens: int | None = None
    response_model: str | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()
    input_tokens: int | None = None
    output_tokens: int | None = None
    output: str | None = None
    error_type: str | None = None
    duration_s: float = 0.0
    handle: Any = None


def _call(telemetry: GenAiTelemetry, call: Call, **answer: Any) -> None:
    with telemetry.started(call):
        pass
    for key, value in answer.items():
        setattr(call, key, value)
    telemetry.ended(call)


def test_a_model_call_is_a_chat_span_with_the_conventions_attributes() -> None:
    spans, measured = Spans(), Measurements()
    prices = PriceTable(
        models={"openai:gpt-4o-mini": ModelPrice(input_per_mtok=1, output_per_mtok=2)}
    )
    telemetry = GenAiTelemetry(
        tracer_provider=spans.provider, meter_provider=measured.provider, prices=prices
    )
    _call(
        telemetry,
        Call(),
        response_model="gpt-4o-mini-2024-07-18",
        response_id="chatcmpl-1",
        finish_reasons=("tool_calls",),
        input_tokens=120,
        output_tokens=30,
        output='{"workflow": "refund"}',
        duration_s=0.25,
    )
    (span,) = spans.named("chat gpt-4o-mini")
    assert span.kind.name == "CLIENT"
    expected = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.response.id": "chatcmpl-1",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
    }
    assert {key: span.attributes[key] for key in expected} == expected
    assert tuple(span.attributes["gen_ai.response.finish_reasons"]) == ("tool_calls",)
    assert "gen_ai.input.messages" not in span.attributes, "content is opt-in"
    assert "gen_ai.output.messages" not in span.attributes
    (duration,) = measured.points("gen_ai.client.operation.duration")
    assert duration.count == 1
    assert duration.attributes["gen_ai.request.model"] == "gpt-4o-mini"
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in measured.points("gen_ai.client.token.usage")
    }
    assert tokens == {"input": 120, "output": 30}
    (cost,) = measured.points("pactmesh.gen_ai.cost")
    assert cost.value == (120 * 1 + 30 * 2) / 1e6


def test_a_failed_call_carries_error_type_and_an_error_status() -> None:
    spans, measured = Spans(), Measurements()
    telemetry = GenAiTelemetry(tracer_provider=spans.provider, meter_provider=measured.provider)
    _call(telemetry, Call(), error_type="timeout")
    (span,) = spans.named("chat gpt-4o-mini")
    assert span.attributes["error.type"] == "timeout"
    assert span.status.status_code.name == "ERROR"
    (duration,) = measured.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "timeout"


def test_content_is_captured_only_when_the_setting_says_so() -> None:
    spans = Spans()
    telemetry = GenAiTelemetry(
        tracer_provider=spans.provider,
        meter_provider=Measurements().provider,
        capture_content=True,
    )
    _call(telemetry, Call(messages="Refund order 4411"), output="done")
    (span,) = spans.all()
    (message,) = json.loads(span.attributes["gen_ai.input.messages"])
    assert message == {"role": "user", "parts": [{"type": "text", "content": "Refund order 4411"}]}
    (answer,) = json.loads(span.attributes["gen_ai.output.messages"])
    assert answer["parts"][0]["content"] == "done"
    assert KitSettings(genai_capture_content="SPAN_ONLY").capture_content
    assert not KitSettings().capture_content


def test_tool_and_workflow_spans_and_the_link_across_a_pause() -> None:
    spans = Spans()
    tracer = spans.provider.get_tracer("test")
    with workflow_span(tracer, workflow="refund"):
        with tool_span(tracer, tool="crm.get_order", call_id="c-1"):
            pass
        paused_at = traceparent()
    assert paused_at is not None
    with workflow_span(tracer, workflow="refund", links=[paused_at]):
        pass
    first, second = spans.named("invoke_workflow refund")
    assert first.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert first.attributes["gen_ai.agent.name"] == "refund"
    assert second.context.trace_id != first.context.trace_id
    (link,) = second.links
    assert (link.context.trace_id, link.context.span_id) == (
        first.context.trace_id,
        first.context.span_id,
    )
    (tool,) = spans.named("execute_tool crm.get_order")
    assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
    assert tool.attributes["gen_ai.tool.name"] == "crm.get_order"
    assert tool.attributes["gen_ai.tool.call.id"] == "c-1"
    assert tool.parent is not None
    assert tool.parent.span_id == first.context.span_id


def test_metrics_are_public_or_need_the_scrape_token(tmp_path: Path) -> None:
    open_settings = KitSettings(data_dir=tmp_path, topic_prefix="kit-metrics.")
    service = Service(open_settings, title="t", description="d", tracer_provider=Spans().provider)
    # No lifespan (no ``with``): the route needs no broker.
    scraped = TestClient(service.app(object())).get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")

    token = "scrape-0123456789"
    locked = open_settings.model_copy(update={"metrics_token": SecretStr(token)})
    service = Service(locked, title="t", description="d", tracer_provider=Spans().provider)
    http = TestClient(service.app(object()))
    assert http.get("/metrics").status_code == 401
    assert http.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    answer = http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
