"""Tools with typed arguments and results, and running one call: retries with backoff
within the call's deadline, one span per call, and every failure an outcome."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import Meter
from pactmesh_contracts.events import ToolCallCompleted, ToolCallFailed, ToolErrorCode
from pactmesh_contracts.sensitivity import redact
from pactmesh_kit.genai import DURATION_BUCKETS, ERROR_TYPE, TOOL_NAME, tool_result, tool_span
from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

from pactmesh_tools.domain.errors import ToolError, TransientError
from pactmesh_tools.domain.resilience import CallContext

logger = logging.getLogger(__name__)

ToolFunction = Callable[[Any, CallContext], Awaitable[BaseModel]]
"""Runs one attempt: validated arguments and the call's context in, result model out."""


@dataclass(frozen=True)
class OnBehalf:
    """Whom a call acts for: its envelope's tenant and principal's subject."""

    tenant: str
    principal: str


@dataclass(frozen=True)
class ToolPolicy:
    """How one tool's calls are attempted."""

    attempt_timeout_s: float = 5.0
    """Bound on each backend request; the call as a whole is bounded by its deadline."""
    max_attempts: int = 4
    backoff_initial_s: float = 0.1
    """First pause between attempts; each later one doubles, up to ``backoff_max_s``."""
    backoff_max_s: float = 2.0
    backoff_jitter_s: float = 0.1
    """Up to this much is added at random to each pause, so retries do not align."""


@dataclass(frozen=True)
class Tool:
    """One tool: its contract and the function that runs one attempt of it."""

    name: str
    description: str
    arguments: type[BaseModel]
    result: type[BaseModel]
    run: ToolFunction
    side_effecting: bool = False
    """Sends the call's idempotency key, so the backend performs it at most once."""
    backend: str = ""
    """The backend it reaches (``carriers.{carrier}`` when an argument picks it)."""


@dataclass(frozen=True)
class Outcome:
    """What came of one call."""

    ok: bool
    result: dict[str, Any]
    error_code: ToolErrorCode | None
    message: str
    retryable: bool
    attempts: int
    """Attempts that reached a backend (0 when refused before any)."""
    duration_ms: int

    def to_event(self, *, call_id: uuid.UUID, tool: str) -> ToolCallCompleted | ToolCallFailed:
        """The result event to publish for call ``call_id``."""
        if self.ok:
            return ToolCallCompleted(
                call_id=call_id,
                tool=tool,
                result=self.result,
                attempts=max(self.attempts, 1),
                duration_ms=self.duration_ms,
            )
        return ToolCallFailed(
            call_id=call_id,
            tool=tool,
            error_code=self.error_code or ToolErrorCode.BACKEND_ERROR,
            message=self.message[:4000],
            retryable=self.retryable,
            attempts=self.attempts,
        )


class ToolRegistry:
    """The tools this service can run, by name, with how each is attempted."""

    def __init__(
        self,
        tools: list[Tool],
        *,
        policy: Callable[[str], ToolPolicy] = lambda _name: ToolPolicy(),
        tracer: trace.Tracer | None = None,
        meter: Meter | None = None,
        capture_content: bool = False,
    ) -> None:
        """``capture_content``: tool spans carry the call's arguments and result, their
        sensitive fields redacted (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT``)."""
        self._tools = {t.name: t for t in tools}
        self._policy = policy
        self._tracer = tracer or trace.get_tracer(__name__)
        self._capture = capture_content
        self._duration = (meter or metrics.NoOpMeter(__name__)).create_histogram(
            "gen_ai.execute_tool.duration",
            unit="s",
            description="Tool calls and their duration, by tool, backend and outcome",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    @property
    def names(self) -> tuple[str, ...]:
        """The registered tools' names."""
        return tuple(self._tools)

    def redacted(
        self, tool: str, arguments: dict[str, Any], result: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A call's arguments and result with their contracts' sensitive fields redacted
        (as they are for a span or the audit timeline); unchanged for an unknown tool."""
        spec = self._tools.get(tool)
        if spec is None:
            return arguments, result
        return redact(spec.arguments, arguments), redact(spec.result, result) if result else {}

    def describe(self) -> list[dict[str, Any]]:
        """Every tool with the JSON Schemas of its arguments and result."""
        return [
            {
                "name": t.name,
                "description": t.description,
                "side_effecting": t.side_effecting,
                "arguments": t.arguments.model_json_schema(),
                "result": t.result.model_json_schema(),
            }
            for t in self._tools.values()
        ]

    async def invoke(
        self,
        *,
        tool: str,
        arguments: dict[str, Any],
        idempotency_key: str,
        timeout_s: float,
        on_behalf: OnBehalf,
        call_id: str | None = None,
    ) -> Outcome:
        """Run one call for ``on_behalf`` (the tenant and subject the call acts for, which
        every backend request carries) to completion or failure within ``timeout_s``,
        retries included, in an ``execute_tool`` span of the GenAI conventions.

        Never raises (but for cancellation): an unexpected exception is a
        ``BACKEND_ERROR`` outcome, so the workflow always hears back.
        """
        spec = self._tools.get(tool)
        captured = redact(spec.arguments, arguments) if self._capture and spec else None
        with tool_span(
            self._tracer,
            tool=tool,
            call_id=call_id,
            description=spec.description if spec else None,
            arguments=captured,
        ) as span:
            outcome = await self._invoke(tool, arguments, idempotency_key, timeout_s, on_behalf)
            span.set_attributes(
                {
                    "pactmesh.tool.attempts": outcome.attempts,
                    "pactmesh.tool.outcome": "ok" if outcome.ok else str(outcome.error_code),
                }
            )
            if self._capture and spec and outcome.ok:
                tool_result(span, redact(spec.result, outcome.result))
            if not outcome.ok:
                span.set_attribute(ERROR_TYPE, str(outcome.error_code))
                span.set_status(trace.StatusCode.ERROR, outcome.message[:200])
        self._measure(tool, spec, outcome)
        return outcome

    def _measure(self, tool: str, spec: Tool | None, outcome: Outcome) -> None:
        attributes = {TOOL_NAME: tool, "pactmesh.tool.backend": spec.backend if spec else ""}
        if not outcome.ok:
            attributes[ERROR_TYPE] = str(outcome.error_code)
        self._duration.record(outcome.duration_ms / 1000, attributes)

    async def _invoke(
        self,
        tool: str,
        arguments: dict[str, Any],
        idempotency_key: str,
        timeout_s: float,
        on_behalf: OnBehalf,
    ) -> Outcome:
        clock = _Stopwatch()
        spec = self._tools.get(tool)
        if spec is None:
            return clock.failed(
                ToolErrorCode.UNKNOWN_TOOL, f"no tool {tool!r}", retryable=False, attempts=0
            )
        try:
            # Arguments travel as JSON: validated in JSON mode, the strict contracts take
            # what JSON can say (a date as its ISO string) and nothing looser.
            args = spec.arguments.model_validate_json(json.dumps(arguments))
        except ValidationError as exc:
            return clock.failed(
                ToolErrorCode.INVALID_ARGUMENTS, str(exc), retryable=False, attempts=0
            )
        policy = self._policy(tool)
        attempts = _Attempts(spec, args, idempotency_key, policy, on_behalf)
        try:
            async with asyncio.timeout(timeout_s):
                answer: BaseModel = await _retrying(policy, timeout_s)(attempts.run)
        except Exception as exc:
            code, message, fields = _failure(tool, exc, timeout_s, attempts)
            return clock.failed(code, message, **fields)
        return clock.done(
            ok=True,
            result=answer.model_dump(mode="json"),
            error_code=None,
            message="",
            retryable=False,
            attempts=attempts.sent,
        )


class _Stopwatch:
    """An outcome's duration, from when the call started."""

    def __init__(self) -> None:
        self._started = time.monotonic()

    def done(self, **fields: Any) -> Outcome:
        elapsed = int((time.monotonic() - self._started) * 1000)
        return Outcome(duration_ms=elapsed, **fields)

    def failed(
        self, code: ToolErrorCode, message: str, *, retryable: bool, attempts: int
    ) -> Outcome:
        return self.done(
            ok=False,
            result={},
            error_code=code,
            message=message,
            retryable=retryable,
            attempts=attempts,
        )


def _failure(
    tool: str, exc: Exception, timeout_s: float, attempts: _Attempts
) -> tuple[ToolErrorCode, str, dict[str, Any]]:
    """How a call that raised ``exc`` failed: its code, message and the outcome's
    ``retryable`` and ``attempts``."""
    sent = attempts.sent
    if isinstance(exc, TimeoutError):
        message = f"{tool} did not complete within its {timeout_s:g}s deadline"
        if attempts.last_error is not None:
            message += f" ({sent} attempts; last: {attempts.last_error})"
        return ToolErrorCode.TIMEOUT, message, {"retryable": True, "attempts": sent}
    if isinstance(exc, ToolError):
        return exc.code, str(exc), {"retryable": exc.retryable, "attempts": sent}
    logger.error("%s raised unexpectedly", tool, exc_info=exc)
    message = f"{tool} failed unexpectedly: {exc!r}"
    return ToolErrorCode.BACKEND_ERROR, message, {"retryable": False, "attempts": sent}


class _Attempts:
    """Runs attempts of one call and remembers what they did."""

    def __init__(
        self, spec: Tool, args: BaseModel, key: str, policy: ToolPolicy, on_behalf: OnBehalf
    ) -> None:
        self._spec, self._args, self._key, self._policy = spec, args, key, policy
        self._on_behalf = on_behalf
        self.sent = 0
        """Attempts that sent at least one backend request."""
        self.last_error: ToolError | None = None

    async def run(self) -> BaseModel:
        ctx = CallContext(
            idempotency_key=self._key,
            attempt_timeout_s=self._policy.attempt_timeout_s,
            tenant=self._on_behalf.tenant,
            principal=self._on_behalf.principal,
        )
        try:
            return await self._spec.run(self._args, ctx)
        except TransientError as exc:
            self.last_error = exc
            logger.info("%s attempt failed, may retry: %s", self._spec.name, exc)
            raise
        finally:
            if ctx.requests:
                self.sent += 1


def _retrying(policy: ToolPolicy, deadline_s: float) -> AsyncRetrying:
    """Retry transient failures with exponential backoff and jitter, never starting a
    pause that would end past the deadline (which also bounds the whole call)."""
    return AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts) | stop_before_delay(deadline_s),
        wait=wait_exponential_jitter(
            multiplier=policy.backoff_initial_s,
            max=policy.backoff_max_s,
            jitter=policy.backoff_jitter_s,
        ),
        retry=retry_if_exception_type(TransientError),
        reraise=True,
    )
