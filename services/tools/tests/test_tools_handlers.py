"""The tools service's subscriber and dispatcher on FastStream's in-memory broker,
calling the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from pactmesh_contracts.events import ToolCallCompleted, ToolCallFailed, ToolErrorCode
from pactmesh_sandbox.testing import SandboxAdmin
from pactmesh_tools.domain.registry import Tool, ToolRegistry
from pactmesh_tools.domain.resilience import CallContext
from pactmesh_tools.testing import RunningTools, RunTools, policy_allowing
from pydantic import BaseModel


@pytest.fixture
async def service(run_tools: RunTools, tools: ToolRegistry) -> AsyncIterator[RunningTools]:
    async with run_tools(tools) as running:
        yield running


async def test_successful_call_answers_with_its_result(service: RunningTools) -> None:
    request = await service.call("crm.get_order", {"order_id": "4411"})

    [answer] = await service.results(1)
    assert (answer.workflow_id, answer.causation_id) == (request.workflow_id, request.event_id)
    assert (answer.tenant, answer.principal) == (request.tenant, request.principal)
    assert isinstance(answer.payload, ToolCallCompleted)
    assert answer.payload.call_id == request.payload.call_id
    assert answer.payload.result["status"] == "shipped"
    assert answer.payload.attempts == 1


async def test_failed_call_answers_with_the_error(run_tools: RunTools, tools: ToolRegistry) -> None:
    # allowed by the policy, so that it is the registry that refuses it
    allowed = policy_allowing([*tools.names, "crm.delete_everything"])
    async with run_tools(tools, policy=allowed) as service:
        request = await service.call("crm.delete_everything", {})
        [answer] = await service.results(1)

    assert answer.causation_id == request.event_id
    assert isinstance(answer.payload, ToolCallFailed)
    assert answer.payload.call_id == request.payload.call_id
    assert answer.payload.error_code is ToolErrorCode.UNKNOWN_TOOL
    assert answer.payload.retryable is False


async def test_the_idempotency_key_reaches_the_backend(
    service: RunningTools, admin: SandboxAdmin
) -> None:
    order = {
        "vendor": "Dell",
        "items": [{"description": "laptop", "quantity": 25, "unit_price": 1200.0}],
        "amount": 30_000.0,
        "currency": "USD",
    }
    await service.call("erp.create_purchase_order", order, key="wf-42:raise_po")
    await service.call("erp.create_purchase_order", order, key="wf-42:raise_po")

    first, replayed = (r.payload for r in await service.results(2))
    assert isinstance(first, ToolCallCompleted)
    assert isinstance(replayed, ToolCallCompleted)
    assert first.result == replayed.result
    [entry] = await admin.ledger()
    assert entry["idempotency_key"] == "wf-42:raise_po"


async def test_a_tool_that_raises_still_gets_an_answer(run_tools: RunTools) -> None:
    class Nothing(BaseModel):
        pass

    async def broken(args: Nothing, ctx: CallContext) -> Nothing:
        ctx.requests += 1
        return {}["missing"]  # type: ignore[no-any-return]

    boom: Callable[..., Any] = broken
    registry = ToolRegistry([Tool("test.broken", "Raises.", Nothing, Nothing, boom)])
    async with run_tools(registry) as service:
        request = await service.call("test.broken", {})
        [answer] = await service.results(1)
    assert isinstance(answer.payload, ToolCallFailed)
    assert answer.payload.call_id == request.payload.call_id
    assert answer.payload.error_code is ToolErrorCode.BACKEND_ERROR
    assert answer.payload.message == "test.broken failed unexpectedly: KeyError('missing')"
    assert (answer.payload.retryable, answer.payload.attempts) == (False, 1)
