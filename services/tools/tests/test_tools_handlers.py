"""The tools service's subscriber on FastStream's in-memory broker, calling the sandbox."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
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
from pactmesh_sandbox.testing import SandboxAdmin
from pactmesh_tools import handlers
from pactmesh_tools.domain.registry import Tool, ToolRegistry
from pactmesh_tools.domain.resilience import CallContext
from pactmesh_tools.settings import Settings
from pydantic import BaseModel

SETTINGS = Settings(topic_prefix="tools-test.")
Results = tuple[KafkaBroker, list[Envelope[ToolResult]]]


async def _running(registry: ToolRegistry) -> AsyncIterator[Results]:
    broker = make_broker(SETTINGS, tracer_provider=None)
    publisher = EventPublisher(broker, SETTINGS, produces=[TOOL_RESULTS])
    handlers.register(broker, SETTINGS, publisher, registry)
    received: list[Envelope[ToolResult]] = []

    @subscriber(broker, TOOL_RESULTS, SETTINGS)
    async def on_result(event: Envelope[ToolResult]) -> None:
        received.append(event)

    async with TestKafkaBroker(broker):
        yield broker, received


@pytest.fixture
async def results(tools: ToolRegistry) -> AsyncIterator[Results]:
    async for running in _running(tools):
        yield running


async def _call(
    broker: KafkaBroker, tool: str, arguments: dict[str, Any], key: str = "wf:step"
) -> Envelope[Any]:
    request = new_event(
        ToolCallRequested(
            call_id=uuid.uuid4(), tool=tool, arguments=arguments, idempotency_key=key
        ),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1"),
    )
    await broker.publish(
        encode(request), TOOL_CALLS.qualified(SETTINGS.topic_prefix), key=request.key
    )
    return request


async def test_successful_call_answers_with_its_result(results: Results) -> None:
    broker, received = results
    request = await _call(broker, "crm.get_order", {"order_id": "4411"})

    [answer] = received
    assert (answer.workflow_id, answer.causation_id) == (request.workflow_id, request.event_id)
    assert isinstance(answer.payload, ToolCallCompleted)
    assert answer.payload.call_id == request.payload.call_id
    assert answer.payload.result["status"] == "shipped"
    assert answer.payload.attempts == 1


async def test_failed_call_answers_with_the_error(results: Results) -> None:
    broker, received = results
    request = await _call(broker, "crm.delete_everything", {})

    [answer] = received
    assert isinstance(answer.payload, ToolCallFailed)
    assert answer.payload.call_id == request.payload.call_id
    assert answer.payload.error_code is ToolErrorCode.UNKNOWN_TOOL
    assert answer.payload.retryable is False


async def test_the_idempotency_key_reaches_the_backend(
    results: Results, admin: SandboxAdmin
) -> None:
    broker, received = results
    order = {
        "vendor": "Dell",
        "items": [{"description": "laptop", "quantity": 25, "unit_price": 1200.0}],
        "amount": 30_000.0,
        "currency": "USD",
    }
    await _call(broker, "erp.create_purchase_order", order, key="wf-42:raise_po")
    await _call(broker, "erp.create_purchase_order", order, key="wf-42:raise_po")

    first, replayed = (r.payload for r in received)
    assert isinstance(first, ToolCallCompleted)
    assert isinstance(replayed, ToolCallCompleted)
    assert first.result == replayed.result
    [entry] = await admin.ledger()
    assert entry["idempotency_key"] == "wf-42:raise_po"


async def test_a_tool_that_raises_still_gets_an_answer() -> None:
    class Nothing(BaseModel):
        pass

    async def broken(args: Nothing, ctx: CallContext) -> Nothing:
        ctx.requests += 1
        return {}["missing"]  # type: ignore[no-any-return]

    boom: Callable[..., Any] = broken
    registry = ToolRegistry([Tool("test.broken", "Raises.", Nothing, Nothing, boom)])
    async for broker, received in _running(registry):
        request = await _call(broker, "test.broken", {})
        [answer] = received
        assert isinstance(answer.payload, ToolCallFailed)
        assert answer.payload.call_id == request.payload.call_id
        assert answer.payload.error_code is ToolErrorCode.BACKEND_ERROR
        assert answer.payload.message == "test.broken failed unexpectedly: KeyError('missing')"
        assert (answer.payload.retryable, answer.payload.attempts) == (False, 1)
