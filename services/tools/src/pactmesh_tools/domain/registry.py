"""Tools with typed arguments and results, and running one call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pactmesh_contracts.events import ToolErrorCode
from pydantic import BaseModel, ValidationError


class ToolError(Exception):
    """A backend refused or failed a call."""

    def __init__(self, code: ToolErrorCode, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class Tool:
    """One tool: its contract and the function that runs it."""

    name: str
    description: str
    arguments: type[BaseModel]
    result: type[BaseModel]
    run: Callable[[Any], Awaitable[BaseModel]]
    side_effecting: bool = False


@dataclass(frozen=True)
class Outcome:
    """What came of one call."""

    ok: bool
    result: dict[str, Any]
    error_code: ToolErrorCode | None
    message: str
    retryable: bool
    attempts: int
    duration_ms: int


class ToolRegistry:
    """The tools this service can run, by name."""

    def __init__(self, tools: list[Tool]) -> None:
        self._tools = {t.name: t for t in tools}

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

    async def invoke(self, *, tool: str, arguments: dict[str, Any], timeout_s: float) -> Outcome:
        """Run one call to completion or failure; never raises for a tool's own errors."""
        started = time.monotonic()

        def done(**fields: Any) -> Outcome:
            elapsed = int((time.monotonic() - started) * 1000)
            return Outcome(duration_ms=elapsed, **fields)

        spec = self._tools.get(tool)
        if spec is None:
            return done(
                ok=False,
                result={},
                error_code=ToolErrorCode.UNKNOWN_TOOL,
                message=f"no tool {tool!r}",
                retryable=False,
                attempts=0,
            )
        try:
            args = spec.arguments.model_validate(arguments)
        except ValidationError as exc:
            return done(
                ok=False,
                result={},
                error_code=ToolErrorCode.INVALID_ARGUMENTS,
                message=str(exc),
                retryable=False,
                attempts=0,
            )
        try:
            async with asyncio.timeout(timeout_s):
                result = await spec.run(args)
        except TimeoutError:
            return done(
                ok=False,
                result={},
                error_code=ToolErrorCode.TIMEOUT,
                message=f"{tool} did not answer within {timeout_s}s",
                retryable=True,
                attempts=1,
            )
        except ToolError as exc:
            return done(
                ok=False,
                result={},
                error_code=exc.code,
                message=str(exc),
                retryable=exc.retryable,
                attempts=1,
            )
        return done(
            ok=True,
            result=result.model_dump(mode="json"),
            error_code=None,
            message="",
            retryable=False,
            attempts=1,
        )
