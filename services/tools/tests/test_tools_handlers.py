"""The tools service's subscriber on FastStream's in-memory broker."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, TestKafkaBroker
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
)
from pactmesh_contracts.topics import TOOL_CALLS, TOOL_RESULTS, ToolResult
from pactmesh_kit.broker import EventPublisher, encode, make_broker, subscriber
from pactmesh_tools import handlers
from pactmesh_tools.adapters.sandbox import sandbox_tools
from pactmesh_tools.domain.registry import ToolRegistry
from pactmesh_tools.settings import Settings

SETTINGS = Settings(topic_prefix="tools-test.")


@pytest.fixture
async def results() -> AsyncIterator[tuple[KafkaBroker, list[Envelope[ToolResult]]]]:
    broker = make_broker(SETTINGS, tracer_provider=None)
    publisher = EventPublisher(broker, SETTINGS, produces=[TOOL_RESULTS])
    handlers.register(broker, SETTINGS, publisher, ToolRegistry(sandbox_tools()))
    received: list[Envelope[ToolResult]] = []

    @subscriber(broker, TOOL_RESULTS, SETTINGS)
    async def on_result(event: Envelope[ToolResult]) -> None:
        received.append(event)

    async with TestKafkaBroker(broker):
        yield broker, received


async def _call(broker: KafkaBroker, tool: str, arguments: dict[str, Any]) -> Envelope[Any]:
    request = new_event(
        ToolCallRequested(
            call_id=uuid.uuid4(), tool=tool, arguments=arguments, idempotency_key="wf:step"
        ),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1"),
    )
    await broker.publish(
        encode(request), TOOL_CALLS.qualified(SETTINGS.topic_prefix), key=request.key
    )
    return request


async def test_successful_call_answers_with_its_result(
    results: tuple[KafkaBroker, list[Envelope[ToolResult]]],
) -> None:
    broker, received = results
    request = await _call(broker, "crm.get_order", {"order_id": "4411"})

    [answer] = received
    assert (answer.workflow_id, answer.causation_id) == (request.workflow_id, request.event_id)
    assert isinstance(answer.payload, ToolCallCompleted)
    assert answer.payload.call_id == request.payload.call_id
    assert answer.payload.result["status"] == "shipped"


async def test_failed_call_answers_with_the_error(
    results: tuple[KafkaBroker, list[Envelope[ToolResult]]],
) -> None:
    broker, received = results
    request = await _call(broker, "crm.delete_everything", {})

    [answer] = received
    assert isinstance(answer.payload, ToolCallFailed)
    assert answer.payload.call_id == request.payload.call_id
    assert answer.payload.error_code is ToolErrorCode.UNKNOWN_TOOL
    assert answer.payload.retryable is False
