"""Running one tool call: every failure becomes an outcome, never an exception."""

from __future__ import annotations

import asyncio
import json

import pytest
from pactmesh_contracts.events import ToolErrorCode
from pactmesh_tools.domain.registry import Tool, ToolError, ToolRegistry
from pydantic import BaseModel, ConfigDict


class EchoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str
    times: int = 1


class EchoResult(BaseModel):
    echoed: list[str]
    ratio: float


async def echo(args: EchoArgs) -> EchoResult:
    if args.text == "refuse":
        raise ToolError(ToolErrorCode.FORBIDDEN, "not allowed to echo that", retryable=False)
    if args.text == "flaky":
        raise ToolError(ToolErrorCode.CIRCUIT_OPEN, "backend cooling down", retryable=True)
    return EchoResult(echoed=[args.text] * args.times, ratio=1 / 3)


async def slow(args: EchoArgs) -> EchoResult:
    await asyncio.sleep(10)
    return EchoResult(echoed=[], ratio=0)


@pytest.fixture
def registry() -> ToolRegistry:
    return ToolRegistry(
        [
            Tool("test.echo", "Echo the text.", EchoArgs, EchoResult, echo),
            Tool("test.slow", "Never answers in time.", EchoArgs, EchoResult, slow),
        ]
    )


async def test_success_result_is_a_json_able_dict(registry: ToolRegistry) -> None:
    outcome = await registry.invoke(
        tool="test.echo", arguments={"text": "hi", "times": 2}, timeout_s=1
    )
    assert outcome.ok
    assert outcome.result == {"echoed": ["hi", "hi"], "ratio": 1 / 3}
    assert json.loads(json.dumps(outcome.result)) == outcome.result
    assert (outcome.error_code, outcome.message, outcome.attempts) == (None, "", 1)
    assert outcome.duration_ms >= 0


async def test_unknown_tool(registry: ToolRegistry) -> None:
    outcome = await registry.invoke(tool="test.nothing", arguments={}, timeout_s=1)
    assert not outcome.ok
    assert outcome.error_code is ToolErrorCode.UNKNOWN_TOOL
    assert outcome.message == "no tool 'test.nothing'"
    assert (outcome.retryable, outcome.attempts) == (False, 0)


@pytest.mark.parametrize(
    ("arguments", "field", "error"),
    [
        ({}, "text", "Field required"),
        ({"text": "hi", "times": "many"}, "times", "Input should be a valid integer"),
        ({"text": "hi", "loud": True}, "loud", "Extra inputs are not permitted"),
    ],
)
async def test_invalid_arguments_name_the_field(
    registry: ToolRegistry, arguments: dict[str, object], field: str, error: str
) -> None:
    outcome = await registry.invoke(tool="test.echo", arguments=arguments, timeout_s=1)
    assert outcome.error_code is ToolErrorCode.INVALID_ARGUMENTS
    assert f"{field}\n  {error}" in outcome.message
    assert (outcome.ok, outcome.retryable, outcome.attempts) == (False, False, 0)


async def test_timeout_is_retryable(registry: ToolRegistry) -> None:
    outcome = await registry.invoke(tool="test.slow", arguments={"text": "x"}, timeout_s=0.05)
    assert outcome.error_code is ToolErrorCode.TIMEOUT
    assert outcome.message == "test.slow did not answer within 0.05s"
    assert (outcome.ok, outcome.retryable, outcome.attempts) == (False, True, 1)
    assert 40 <= outcome.duration_ms < 5_000


@pytest.mark.parametrize(
    ("text", "code", "retryable"),
    [("refuse", ToolErrorCode.FORBIDDEN, False), ("flaky", ToolErrorCode.CIRCUIT_OPEN, True)],
)
async def test_tool_errors_keep_their_code_and_retryability(
    registry: ToolRegistry, text: str, code: ToolErrorCode, retryable: bool
) -> None:
    outcome = await registry.invoke(tool="test.echo", arguments={"text": text}, timeout_s=1)
    assert (outcome.ok, outcome.error_code, outcome.retryable) == (False, code, retryable)
    assert outcome.message in {"not allowed to echo that", "backend cooling down"}
    assert outcome.attempts == 1


def test_describe_lists_each_tool_with_its_schemas(registry: ToolRegistry) -> None:
    [echo_tool, _] = registry.describe()
    assert echo_tool["name"] == "test.echo"
    assert echo_tool["side_effecting"] is False
    assert echo_tool["arguments"]["required"] == ["text"]
    assert set(echo_tool["result"]["properties"]) == {"echoed", "ratio"}
