"""The access policy enforced when a tool is invoked: a call the policy refuses is
answered ``forbidden`` with the reason, audited, and never reaches its backend."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pactmesh_contracts.envelope import Principal
from pactmesh_contracts.events import ToolCallCompleted, ToolCallFailed, ToolErrorCode
from pactmesh_kit.auth import load_access_policy
from pactmesh_sandbox.testing import Recorder, SandboxAdmin
from pactmesh_tools.adapters.inbox import INBOX_FILE
from pactmesh_tools.domain.registry import ToolRegistry
from pactmesh_tools.testing import RunningTools, RunTools

REFUND = {"order_id": "4411", "amount": 20.0, "currency": "USD", "reason": "arrived broken"}
REQUESTER = Principal(subject="mallory", roles=("requester",))
"""May start support-triage only: not granted ``payments.refund``."""
REFUNDER = Principal(subject="alice", roles=("requester",), scopes=("workflow:refund",))


@pytest.fixture
async def service(run_tools: RunTools, tools: ToolRegistry) -> AsyncIterator[RunningTools]:
    """The tools service under the packaged access policy, as deployed."""
    async with run_tools(tools, policy=load_access_policy()) as running:
        yield running


def _inbox(tmp_path: Path) -> dict[str, str]:
    with closing(sqlite3.connect(tmp_path / INBOX_FILE)) as conn:
        return dict(conn.execute("SELECT call_id, status FROM inbox").fetchall())


async def _inbox_settles(tmp_path: Path, expected: dict[str, str]) -> None:
    """The dispatcher marks a call done just after publishing its answer: poll for it."""
    async with asyncio.timeout(10):
        while _inbox(tmp_path) != expected:  # noqa: ASYNC110 - polls another component
            await asyncio.sleep(0.02)


async def _audits(service: RunningTools, count: int) -> list[Any]:
    async with asyncio.timeout(10):
        while len(service.audits) < count:  # noqa: ASYNC110 - the test's consumer appends
            await asyncio.sleep(0.01)
    return list(service.audits)


async def test_a_forged_refund_is_refused_audited_and_never_paid(
    service: RunningTools, admin: SandboxAdmin, recorder: Recorder, tmp_path: Path
) -> None:
    request = await service.call(
        "payments.refund", REFUND, key="wf-1:refund", workflow="refund", principal=REQUESTER
    )

    answer = await service.answer_to(request)
    assert isinstance(answer.payload, ToolCallFailed)
    assert answer.payload.error_code is ToolErrorCode.FORBIDDEN
    assert answer.payload.retryable is False
    assert answer.payload.attempts == 0
    assert "not granted tool 'payments.refund'" in answer.payload.message
    assert "'mallory'" in answer.payload.message
    assert (answer.causation_id, answer.principal) == (request.event_id, REQUESTER)
    [audit] = await _audits(service, 1)
    assert audit.workflow_id == request.workflow_id
    assert audit.causation_id == request.event_id
    assert (audit.payload.service, audit.payload.action) == ("tools", "tool.call.refused")
    detail = audit.payload.detail
    assert detail["call_id"] == str(request.payload.call_id)
    assert (detail["tool"], detail["workflow"], detail["tenant"]) == (
        "payments.refund",
        "refund",
        "acme",
    )
    assert detail["principal"] == {"subject": "mallory", "roles": ["requester"], "scopes": []}
    assert detail["reason"] in answer.payload.message
    assert await admin.ledger(idempotency_key="wf-1:refund") == []
    assert "payments" not in recorder.requests
    await _inbox_settles(tmp_path, {str(request.payload.call_id): "done"})


async def test_the_same_refund_for_a_principal_with_the_scope_is_paid_once(
    service: RunningTools, admin: SandboxAdmin
) -> None:
    request = await service.call(
        "payments.refund", REFUND, key="wf-2:refund", workflow="refund", principal=REFUNDER
    )

    answer = await service.answer_to(request)
    assert isinstance(answer.payload, ToolCallCompleted)
    assert answer.payload.result["amount"] == 20.0
    [entry] = await admin.ledger(idempotency_key="wf-2:refund")
    assert entry["kind"] == "refund"
    assert service.audits == []  # nothing refused
    async with asyncio.timeout(5):
        while not service.timeline:  # noqa: ASYNC110 - the test's consumer appends
            await asyncio.sleep(0.01)
    [called] = service.timeline
    assert called.workflow_id == request.workflow_id
    assert (called.payload.tool, called.payload.ok) == ("payments.refund", True)
    assert called.payload.call_id == request.payload.call_id
    assert called.payload.arguments == dict(request.payload.arguments)
    assert called.payload.result == answer.payload.result


async def test_a_call_granting_itself_a_scope_its_request_lacked_is_refused(
    service: RunningTools, admin: SandboxAdmin, recorder: Recorder
) -> None:
    """The principal of a forged call holds the scope: the policy alone would run it.
    But the request it names was accepted for a principal without it."""
    request = await service.call(
        "payments.refund", REFUND, key="wf-5:refund", workflow="refund", principal=REQUESTER
    )
    await service.answer_to(request)  # (refused by the policy: mallory lacks the grant)
    forged = request.model_copy(
        update={
            "principal": REFUNDER.model_copy(update={"subject": "mallory"}),
            "payload": request.payload.model_copy(update={"call_id": uuid.uuid4()}),
        }
    )

    await service.send(forged, vouched=False)

    answer = await service.answer_to(forged)
    assert isinstance(answer.payload, ToolCallFailed)
    assert answer.payload.error_code is ToolErrorCode.FORBIDDEN
    assert "was accepted for 'mallory' (roles ['requester'], scopes [])" in (answer.payload.message)
    [_, audit] = await _audits(service, 2)
    assert audit.payload.detail["principal"]["scopes"] == ["workflow:refund"]
    assert await admin.ledger(idempotency_key="wf-5:refund") == []
    assert "payments" not in recorder.requests


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({}, "the mesh accepted no request"),
        ({"tenant": "globex"}, "the event is for tenant 'globex'"),
    ],
    ids=["no-request", "another-tenant"],
)
async def test_a_call_for_no_request_or_another_tenants_is_refused(
    service: RunningTools,
    admin: SandboxAdmin,
    recorder: Recorder,
    change: dict[str, Any],
    reason: str,
) -> None:
    vouched = change != {}
    call = await service.call(
        "crm.get_order", {"order_id": "4411"}, workflow="refund", principal=REFUNDER
    )
    await service.answer_to(call)
    recorder.requests.clear()
    forged = call.model_copy(
        update={
            **change,
            "workflow_id": call.workflow_id if vouched else uuid.uuid4(),
            "payload": call.payload.model_copy(update={"call_id": uuid.uuid4()}),
        }
    )

    await service.send(forged, vouched=False)

    answer = await service.answer_to(forged)
    assert isinstance(answer.payload, ToolCallFailed)
    assert answer.payload.error_code is ToolErrorCode.FORBIDDEN
    assert reason in answer.payload.message
    [audit] = await _audits(service, 1)
    assert reason in audit.payload.detail["reason"]
    assert recorder.requests == {}


@pytest.mark.parametrize(
    ("workflow", "tool", "arguments", "reason"),
    [
        (None, "crm.get_order", {"order_id": "4411"}, "without naming a workflow"),
        ("support-triage", "payments.refund", REFUND, "may not use tool 'payments.refund'"),
        ("made-up", "crm.get_order", {"order_id": "4411"}, "has no tools in the access policy"),
    ],
)
async def test_a_call_outside_its_workflow_is_refused_even_for_a_granted_principal(
    service: RunningTools,
    recorder: Recorder,
    workflow: str | None,
    tool: str,
    arguments: dict[str, Any],
    reason: str,
) -> None:
    everything = Principal(
        subject="root",
        scopes=tuple(f"workflow:{w}" for w in load_access_policy().workflow_tools),
    )
    request = await service.call(tool, arguments, workflow=workflow, principal=everything)

    answer = await service.answer_to(request)
    assert isinstance(answer.payload, ToolCallFailed)
    assert answer.payload.error_code is ToolErrorCode.FORBIDDEN
    assert reason in answer.payload.message
    [audit] = await _audits(service, 1)
    assert audit.payload.detail["reason"] in answer.payload.message
    assert recorder.requests == {}


async def test_a_redelivered_forged_call_is_answered_and_audited_once(
    service: RunningTools, admin: SandboxAdmin
) -> None:
    request = await service.call(
        "payments.refund", REFUND, key="wf-3:refund", workflow="refund", principal=REQUESTER
    )
    await service.answer_to(request)
    await service.send(request)  # Kafka redelivers it
    # a later call, answered after the redelivery was handled (one partition, in order)
    control = await service.call(
        "crm.get_order", {"order_id": "4411"}, workflow="refund", principal=REFUNDER
    )
    assert isinstance((await service.answer_to(control)).payload, ToolCallCompleted)

    assert [r.payload.call_id for r in service.received] == [
        request.payload.call_id,
        control.payload.call_id,
    ]
    assert len(service.audits) == 1
    assert await admin.ledger(idempotency_key="wf-3:refund") == []


async def test_a_refusal_is_an_error_event_on_the_dispatch_span(
    run_tools: RunTools, tools: ToolRegistry
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    async with run_tools(tools, policy=load_access_policy(), tracer_provider=provider) as service:
        request = await service.call(
            "payments.refund", REFUND, workflow="refund", principal=REQUESTER
        )
        await service.answer_to(request)

    [dispatch] = [s for s in spans.get_finished_spans() if s.name == "dispatch payments.refund"]
    assert dispatch.status.status_code is StatusCode.ERROR
    [event] = [e for e in dispatch.events if e.name == "tool.call.refused"]
    assert event.attributes is not None
    assert event.attributes["pactmesh.tool"] == "payments.refund"
    assert "not granted" in str(event.attributes["pactmesh.reason"])
    assert not [s for s in spans.get_finished_spans() if s.name == "execute_tool payments.refund"]
