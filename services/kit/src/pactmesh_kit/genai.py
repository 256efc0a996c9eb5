"""Spans and metrics of the OpenTelemetry GenAI semantic conventions.

Follows **GenAI semantic conventions v0.1.0** (``open-telemetry/semantic-conventions-
genai``, the first standalone release, status Development; it depends on semantic
conventions v1.45.0), written here directly rather than through opentelemetry-util-genai
(1.3b0): that package reaches content capture only with ``OTEL_SEMCONV_STABILITY_OPT_IN
=gen_ai_latest_experimental``, builds its own message objects for every call, and has no
hook for redacting a contract's sensitive fields or for span links across a pause; what
is needed is three span shapes and two histograms, on the mesh's hot path.

* ``chat {gen_ai.request.model}`` (CLIENT): one per call to one model
  (``GenAiTelemetry``, the reasoning layer's ``ModelCallObserver``), with
  ``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
  ``gen_ai.response.model``, ``gen_ai.response.id``, ``gen_ai.usage.input_tokens`` /
  ``output_tokens``, ``gen_ai.response.finish_reasons`` and ``error.type``; the metrics
  ``gen_ai.client.operation.duration`` and ``gen_ai.client.token.usage``.
* ``execute_tool {gen_ai.tool.name}`` (INTERNAL): one per tool call (``tool_span``),
  with ``gen_ai.tool.name``, ``gen_ai.tool.call.id``, ``gen_ai.tool.type``; the metric
  ``gen_ai.execute_tool.duration``.
* ``invoke_workflow {gen_ai.agent.name}`` (INTERNAL): one per segment of a workflow run
  (``workflow_span``). v0.1.0 folded the workflow span into ``gen_ai.invoke_agent.internal``:
  ``gen_ai.operation.name`` stays ``invoke_workflow`` and ``gen_ai.workflow.name`` became
  ``gen_ai.agent.name``. A segment resumed by a review links to the segment that paused.

Message content (``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.system_instructions``, ``gen_ai.tool.call.arguments`` / ``.result``) is opt-in,
as the conventions say: only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``
(``KitSettings.capture_content``), and a contract's sensitive fields are redacted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pactmesh_contracts.usage import PriceTable

SEMCONV_VERSION = "gen-ai 0.1.0"
"""The GenAI semantic conventions these spans follow (``semantic-conventions-genai``)."""

OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
TOKEN_TYPE = "gen_ai.token.type"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_DESCRIPTION = "gen_ai.tool.description"
TOOL_ARGUMENTS = "gen_ai.tool.call.arguments"
TOOL_RESULT = "gen_ai.tool.call.result"
AGENT_NAME = "gen_ai.agent.name"
"""Names the workflow on ``invoke_workflow`` spans (it replaced ``gen_ai.workflow.name``)."""
ERROR_TYPE = "error.type"
TEMPLATE_NAME = "pactmesh.prompt.template"
TEMPLATE_VERSION = "pactmesh.prompt.version"
ROLE = "pactmesh.model.role"

DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48)
"""Seconds: the boundaries the conventions give ``gen_ai.client.operation.duration``."""
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
"""The boundaries the conventions give ``gen_ai.client.token.usage``."""

TRACER = "pactmesh.genai"
_PROPAGATOR = TraceContextTextMapPropagator()


class ModelCallView(Protocol):
    """What the kit reads of a ``pactmesh_reasoning.calls.ModelCall`` (the kit does not
    depend on the reasoning package: only the services that call models do)."""

    role: str
    model: str
    provider: str
    messages: Any
    template: Any
    temperature: float | None
    max_tokens: int | None
    response_model: str | None
    response_id: str | None
    finish_reasons: tuple[str, ...]
    input_tokens: int | None
    output_tokens: int | None
    output: str | None
    error_type: str | None
    duration_s: float
    handle: Any
    validation: Any
    errors: tuple[str, ...]
    attempt: int


def model_name(spec: str) -> str:
    """The model part of a ``provider:model`` spec string (all of it without a colon)."""
    _provider, sep, name = spec.partition(":")
    return name if sep else spec


class GenAiTelemetry:
    """A ``chat`` span and the client metrics for every model call (a ``ModelCallObserver``)."""

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider,
        meter_provider: MeterProvider,
        capture_content: bool = False,
        prices: PriceTable | None = None,
    ) -> None:
        self._tracer = tracer_provider.get_tracer(TRACER)
        meter = meter_provider.get_meter(TRACER)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self._cost = meter.create_counter(
            "pactmesh.gen_ai.cost", unit="{USD}", description="Model spend, priced by the table"
        )
        self._capture = capture_content
        self._prices = prices or PriceTable()

    def started(self, call: ModelCallView) -> AbstractContextManager[object]:
        """Open the call's span (current while the router waits for the model)."""
        attributes: dict[str, Any] = {
            OPERATION: "chat",
            PROVIDER: call.provider or "_OTHER",
            REQUEST_MODEL: model_name(call.model),
            ROLE: call.role,
        }
        if call.temperature is not None:
            attributes[REQUEST_TEMPERATURE] = call.temperature
        if call.max_tokens is not None:
            attributes[REQUEST_MAX_TOKENS] = call.max_tokens
        if call.template is not None:
            attributes[TEMPLATE_NAME] = call.template.name
            attributes[TEMPLATE_VERSION] = call.template.version
        if self._capture:
            attributes.update(_input_content(call.messages))
        span = self._tracer.start_span(
            f"chat {model_name(call.model)}", kind=SpanKind.CLIENT, attributes=attributes
        )
        call.handle = span
        return trace.use_span(span, end_on_exit=False)

    def ended(self, call: ModelCallView) -> None:
        """Close the call's span with what the answer said; record the metrics."""
        span = call.handle
        common: dict[str, Any] = {
            OPERATION: "chat",
            PROVIDER: call.provider or "_OTHER",
            REQUEST_MODEL: model_name(call.model),
        }
        if call.response_model:
            common[RESPONSE_MODEL] = call.response_model
        if call.error_type:
            common[ERROR_TYPE] = call.error_type
        self._duration.record(call.duration_s, common)
        if call.input_tokens is not None:
            self._tokens.record(call.input_tokens, {**common, TOKEN_TYPE: "input"})
        if call.output_tokens is not None:
            self._tokens.record(call.output_tokens, {**common, TOKEN_TYPE: "output"})
        spent = self._prices.usage(
            call.model, input_tokens=call.input_tokens or 0, output_tokens=call.output_tokens or 0
        )
        if spent.cost:
            self._cost.add(spent.cost, {REQUEST_MODEL: model_name(call.model)})
        if isinstance(span, trace.Span):
            _finish_chat_span(span, call, capture=self._capture)


def _finish_chat_span(span: trace.Span, call: ModelCallView, *, capture: bool) -> None:
    attributes: dict[str, Any] = {}
    if call.response_model:
        attributes[RESPONSE_MODEL] = call.response_model
    if call.response_id:
        attributes[RESPONSE_ID] = call.response_id
    if call.finish_reasons:
        attributes[FINISH_REASONS] = list(call.finish_reasons)
    if call.input_tokens is not None:
        attributes[INPUT_TOKENS] = call.input_tokens
    if call.output_tokens is not None:
        attributes[OUTPUT_TOKENS] = call.output_tokens
    if capture and call.output is not None:
        message = {"role": "assistant", "parts": [{"type": "text", "content": call.output}]}
        attributes[OUTPUT_MESSAGES] = json.dumps([message])
    span.set_attributes(attributes)
    if call.error_type:
        span.set_attribute(ERROR_TYPE, call.error_type)
        span.set_status(StatusCode.ERROR, call.error_type)
    span.end()


_ROLES = {"human": "user", "ai": "assistant", "tool": "tool", "system": "system"}


def _input_content(messages: Any) -> dict[str, str]:
    """``gen_ai.system_instructions`` and ``gen_ai.input.messages`` of LangChain messages
    (or a plain prompt), as the conventions' JSON: ``[{"role", "parts": [...]}]``."""
    items = messages if isinstance(messages, list) else [messages]
    system, chat = [], []
    for item in items:
        kind = getattr(item, "type", "human")
        text = item if isinstance(item, str) else getattr(item, "text", str(item))
        part = {"type": "text", "content": text}
        if kind == "system":
            system.append(part)
        else:
            chat.append({"role": _ROLES.get(kind, kind), "parts": [part]})
    found = {INPUT_MESSAGES: json.dumps(chat)}
    if system:
        found[SYSTEM_INSTRUCTIONS] = json.dumps(system)
    return found


@contextmanager
def tool_span(
    tracer: trace.Tracer,
    *,
    tool: str,
    call_id: str | None,
    description: str | None = None,
    arguments: Any = None,
    attributes: dict[str, Any] | None = None,
) -> Iterator[trace.Span]:
    """An ``execute_tool {tool}`` span around one tool call. ``arguments`` (already
    redacted) are recorded only when given: pass them only when capture is on."""
    found: dict[str, Any] = {OPERATION: "execute_tool", TOOL_NAME: tool, TOOL_TYPE: "function"}
    if call_id:
        found[TOOL_CALL_ID] = call_id
    if description:
        found[TOOL_DESCRIPTION] = description
    if arguments is not None:
        found[TOOL_ARGUMENTS] = json.dumps(arguments, default=str)
    with tracer.start_as_current_span(
        f"execute_tool {tool}", kind=SpanKind.INTERNAL, attributes={**found, **(attributes or {})}
    ) as span:
        yield span


def tool_result(span: trace.Span, result: Any) -> None:
    """Record a tool's (redacted) result on its span: call only when capture is on."""
    span.set_attribute(TOOL_RESULT, json.dumps(result, default=str))


@contextmanager
def workflow_span(
    tracer: trace.Tracer,
    *,
    workflow: str,
    links: Sequence[str] = (),
    attributes: dict[str, Any] | None = None,
) -> Iterator[trace.Span]:
    """An ``invoke_workflow {workflow}`` span around one segment of a run: from an event
    that starts or resumes it to its next pause or its end. ``links`` are ``traceparent``
    strings of spans this segment continues (the segment that paused for a review)."""
    found = {OPERATION: "invoke_workflow", AGENT_NAME: workflow, **(attributes or {})}
    with tracer.start_as_current_span(
        f"invoke_workflow {workflow}",
        kind=SpanKind.INTERNAL,
        attributes=found,
        links=[link for parent in links if (link := link_to(parent)) is not None],
    ) as span:
        yield span


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, to store where a run pauses."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def link_to(parent: str) -> Link | None:
    """A span link to the span a ``traceparent`` names (``None`` if it names none)."""
    context = trace.get_current_span(_PROPAGATOR.extract({"traceparent": parent}))
    span_context = context.get_span_context()
    return Link(span_context) if span_context.is_valid else None
