"""Running one tool call: retries within the deadline, one span per call, and every
failure an outcome, never an exception."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pactmesh_contracts.events import ToolCallCompleted, ToolCallFailed, ToolErrorCode
from pactmesh_contracts.sensitivity import REDACTED, SENSITIVE_FIELD
from pactmesh_kit.testing_telemetry import Spans
from pactmesh_tools.domain.errors import CircuitOpenError, ToolError, TransientError
from pactmesh_tools.domain.registry import OnBehalf, Outcome, Tool, ToolPolicy, ToolRegistry
from pactmesh_tools.domain.resilience import CallContext
from pydantic import BaseModel, ConfigDict, Field

CALLER = OnBehalf(tenant="acme", principal="user-1")
"""Whom the tests' calls act for."""

FAST = ToolPolicy(backoff_initial_s=0.001, backoff_max_s=0.01, backoff_jitter_s=0.001)


class EchoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    times: int = 1


class EchoResult(BaseModel):
    echoed: list[str]
    ratio: float
    key: str


class Script:
    """A fake backend: fails its first calls as scripted, then echoes."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self, args: EchoArgs, ctx: CallContext) -> EchoResult:
        self.calls += 1
        ctx.requests += 1
        if self.failures:
            raise self.failures.pop(0)
        return EchoResult(echoed=[args.text] * args.times, ratio=1 / 3, key=ctx.idempotency_key)


async def slow(args: EchoArgs, ctx: CallContext) -> EchoResult:
    ctx.requests += 1
    await asyncio.sleep(10)
    raise AssertionError("unreachable")


def _registry(run: Any, policy: ToolPolicy = FAST, **options: Any) -> ToolRegistry:
    tool = Tool("test.echo", "Echo the text.", EchoArgs, EchoResult, run)
    return ToolRegistry([tool], policy=lambda _name: policy, **options)


async def _invoke(registry: ToolRegistry, timeout_s: float = 1, **arguments: Any) -> Outcome:
    return await registry.invoke(
        tool="test.echo",
        arguments=arguments or {"text": "hi"},
        idempotency_key="wf-1:echo",
        timeout_s=timeout_s,
        on_behalf=CALLER,
    )


async def test_success_result_is_a_json_able_dict() -> None:
    outcome = await _invoke(_registry(Script()), text="hi", times=2)
    assert outcome.ok
    assert outcome.result == {"echoed": ["hi", "hi"], "ratio": 1 / 3, "key": "wf-1:echo"}
    assert json.loads(json.dumps(outcome.result)) == outcome.result
    assert (outcome.error_code, outcome.message, outcome.attempts) == (None, "", 1)
    assert outcome.duration_ms >= 0


async def test_unknown_tool() -> None:
    outcome = await _registry(Script()).invoke(
        tool="test.nothing", arguments={}, idempotency_key="k", timeout_s=1, on_behalf=CALLER
    )
    assert not outcome.ok
    assert outcome.error_code is ToolErrorCode.UNKNOWN_TOOL
    assert outcome.message == "no tool 'test.nothing'"
    assert (outcome.retryable, outcome.attempts) == (False, 0)


@pytest.mark.parametrize(
    ("arguments", "field", "error"),
    [
        ({"times": 1}, "text", "Field required"),
        ({"text": "hi", "times": "many"}, "times", "Input should be a valid integer"),
        ({"text": "hi", "loud": True}, "loud", "Extra inputs are not permitted"),
    ],
)
async def test_invalid_arguments_name_the_field(
    arguments: dict[str, object], field: str, error: str
) -> None:
    script = Script()
    outcome = await _invoke(_registry(script), **arguments)
    assert outcome.error_code is ToolErrorCode.INVALID_ARGUMENTS
    assert f"{field}\n  {error}" in outcome.message
    assert (outcome.ok, outcome.retryable, outcome.attempts, script.calls) == (False, False, 0, 0)


async def test_transient_failures_are_retried_and_counted() -> None:
    script = Script(
        TransientError(ToolErrorCode.BACKEND_ERROR, "503"),
        TransientError(ToolErrorCode.TIMEOUT, "slow"),
    )
    outcome = await _invoke(_registry(script))
    assert outcome.ok
    assert outcome.attempts == script.calls == 3


async def test_retries_end_at_max_attempts_with_the_last_error() -> None:
    script = Script(*(TransientError(ToolErrorCode.BACKEND_ERROR, f"503 #{i}") for i in range(9)))
    policy = ToolPolicy(max_attempts=3, backoff_initial_s=0, backoff_jitter_s=0)
    outcome = await _invoke(_registry(script, policy))
    assert (outcome.error_code, outcome.retryable, outcome.attempts) == (
        ToolErrorCode.BACKEND_ERROR,
        True,
        3,
    )
    assert outcome.message == "503 #2"


@pytest.mark.parametrize(
    ("error", "code", "retryable", "attempts"),
    [
        (ToolError(ToolErrorCode.FORBIDDEN, "not allowed", retryable=False), "forbidden", False, 1),
        (ToolError(ToolErrorCode.BACKEND_ERROR, "404", retryable=False), "backend_error", False, 1),
        (CircuitOpenError("crm", 3.0), "circuit_open", True, 1),
    ],
)
async def test_final_errors_are_not_retried(
    error: ToolError, code: str, retryable: bool, attempts: int
) -> None:
    script = Script(error)
    outcome = await _invoke(_registry(script))
    assert (outcome.ok, outcome.error_code, outcome.retryable) == (False, code, retryable)
    assert outcome.message == str(error)
    assert outcome.attempts == script.calls == attempts


async def test_a_breaker_refusal_is_not_an_attempt() -> None:
    async def refused(args: EchoArgs, ctx: CallContext) -> EchoResult:
        raise CircuitOpenError("crm", 3.0)

    outcome = await _invoke(_registry(refused))
    assert (outcome.error_code, outcome.attempts) == (ToolErrorCode.CIRCUIT_OPEN, 0)


async def test_an_unexpected_exception_is_a_failed_outcome() -> None:
    """Once the bug that left workflows waiting forever: it must not escape ``invoke``."""
    script = Script(KeyError("po_id"))
    outcome = await _invoke(_registry(script))
    assert (outcome.ok, outcome.error_code, outcome.retryable, outcome.attempts) == (
        False,
        ToolErrorCode.BACKEND_ERROR,
        False,
        1,
    )
    assert outcome.message == "test.echo failed unexpectedly: KeyError('po_id')"


async def test_the_deadline_bounds_the_call() -> None:
    outcome = await _invoke(_registry(slow), timeout_s=0.05)
    assert outcome.error_code is ToolErrorCode.TIMEOUT
    assert outcome.message == "test.echo did not complete within its 0.05s deadline"
    assert (outcome.ok, outcome.retryable, outcome.attempts) == (False, True, 1)
    assert 40 <= outcome.duration_ms < 5_000


async def test_the_deadline_message_names_the_last_failure() -> None:
    script = Script(*(TransientError(ToolErrorCode.BACKEND_ERROR, "503") for _ in range(99)))
    policy = ToolPolicy(max_attempts=99, backoff_initial_s=0.02, backoff_max_s=0.02)
    outcome = await _invoke(_registry(script, policy), timeout_s=0.1)
    assert outcome.error_code in (ToolErrorCode.TIMEOUT, ToolErrorCode.BACKEND_ERROR)
    assert outcome.retryable
    assert 2 <= outcome.attempts <= 6
    if outcome.error_code is ToolErrorCode.TIMEOUT:
        assert outcome.message.endswith(f"({outcome.attempts} attempts; last: 503)")


def test_describe_lists_each_tool_with_its_schemas() -> None:
    [echo_tool] = _registry(Script()).describe()
    assert echo_tool["name"] == "test.echo"
    assert echo_tool["side_effecting"] is False
    assert echo_tool["arguments"]["required"] == ["text"]
    assert set(echo_tool["result"]["properties"]) == {"echoed", "ratio", "key"}


async def test_each_call_is_one_span_with_its_outcome() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    script = Script(TransientError(ToolErrorCode.BACKEND_ERROR, "503"))
    registry = _registry(script, tracer=provider.get_tracer("test"))

    await _invoke(registry)
    await registry.invoke(
        tool="test.nope", arguments={}, idempotency_key="k", timeout_s=1, on_behalf=CALLER
    )

    ok, unknown = exporter.get_finished_spans()
    assert (ok.name, unknown.name) == ("execute_tool test.echo", "execute_tool test.nope")
    attributes = dict(ok.attributes or {})
    attributes.pop("gen_ai.tool.description")
    assert attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "test.echo",
        "gen_ai.tool.type": "function",
        "pactmesh.tool.attempts": 2,
        "pactmesh.tool.outcome": "ok",
    }
    assert (unknown.attributes or {})["pactmesh.tool.outcome"] == "unknown_tool"
    assert unknown.status.status_code.name == "ERROR"
    provider.shutdown()


def test_outcomes_become_result_events() -> None:
    call_id = uuid.uuid4()
    done = Outcome(True, {"a": 1}, None, "", False, 3, 12).to_event(call_id=call_id, tool="a.b")
    assert isinstance(done, ToolCallCompleted)
    assert (done.call_id, done.result, done.attempts, done.duration_ms) == (
        call_id,
        {"a": 1},
        3,
        12,
    )

    failed = Outcome(False, {}, ToolErrorCode.CIRCUIT_OPEN, "open", True, 0, 1).to_event(
        call_id=call_id, tool="a.b"
    )
    assert isinstance(failed, ToolCallFailed)
    assert (failed.error_code, failed.message, failed.retryable, failed.attempts) == (
        ToolErrorCode.CIRCUIT_OPEN,
        "open",
        True,
        0,
    )


class SecretArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    member_id: str = Field(json_schema_extra=SENSITIVE_FIELD)


async def test_arguments_and_results_reach_the_span_only_when_captured_and_redacted() -> None:
    spans = Spans()

    async def echo(args: SecretArgs, ctx: CallContext) -> EchoResult:
        ctx.requests += 1
        return EchoResult(echoed=[args.text], ratio=1.0, key=ctx.idempotency_key)

    tool = Tool("test.secret", "Echo.", SecretArgs, EchoResult, echo, backend="test")
    arguments = {"text": "hi", "member_id": "XJH482913057"}
    for capture in (False, True):
        registry = ToolRegistry(
            [tool], tracer=spans.provider.get_tracer("t"), capture_content=capture
        )
        await registry.invoke(
            tool="test.secret",
            arguments=arguments,
            idempotency_key="k",
            timeout_s=1,
            on_behalf=CALLER,
            call_id="c",
        )
    quiet, captured = spans.named("execute_tool test.secret")
    assert "gen_ai.tool.call.arguments" not in (quiet.attributes or {})
    assert json.loads(captured.attributes["gen_ai.tool.call.arguments"]) == {
        "text": "hi",
        "member_id": REDACTED,
    }
    assert json.loads(captured.attributes["gen_ai.tool.call.result"])["echoed"] == ["hi"]
    assert captured.attributes["gen_ai.tool.call.id"] == "c"
