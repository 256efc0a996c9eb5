"""Durable timers, on a fake clock: a tool call past its deadline takes the graph's
recovery path, a late genuine answer then changes nothing, a run stopped between steps
is run on by the sweeper, and a finished run's checkpoints go after their TTL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    RequestRouted,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
    WorkflowCompleted,
)
from pactmesh_contracts.topics import REQUESTS_ROUTED, TOOL_RESULTS
from pactmesh_kit.auth import load_access_policy
from pactmesh_orchestrator.domain.engine import Engine, call_id_for
from pactmesh_orchestrator.domain.timers import MemoryWakeups, Sweeper, TimerSettings, Wake
from pactmesh_orchestrator.domain.workflows import build_graphs
from pactmesh_orchestrator.testing import CollectingPublisher, FakeClock, MemoryOutbox
from pactmesh_workflows.gates import GatePolicy
from pydantic import JsonValue

TIMEOUT_S, MARGIN_S, STALL_S, TTL_S = 12.5, 5.0, 60.0, 3_600.0
DEADLINE_S = TIMEOUT_S + MARGIN_S


class Mesh:
    """An engine, its sweeper and what it published, on one fake clock."""

    def __init__(self, graphs: Any = None, saver: InMemorySaver | None = None) -> None:
        self.clock = FakeClock()
        self.saver = saver or InMemorySaver()
        self.publisher = CollectingPublisher(wire_check=True)
        self.wakeups = MemoryWakeups()
        self.engine = self.engine_with(
            graphs or build_graphs(checkpointer=self.saver, gates=GatePolicy.load())
        )
        self.sweeper = Sweeper(self.engine, self.wakeups, lease_s=STALL_S, clock=self.clock)

    def engine_with(self, graphs: Any) -> Engine:
        return Engine(
            graphs=graphs,
            checkpointer=self.saver,
            publisher=self.publisher,
            outbox=MemoryOutbox(),
            reviewers=load_access_policy(),
            tool_timeout_s=TIMEOUT_S,
            clock=self.clock,
            wakeups=self.wakeups,
            timers=TimerSettings(
                deadline_margin_s=MARGIN_S, stall_after_s=STALL_S, finished_ttl_s=TTL_S
            ),
        )

    def published(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.publisher.take() if isinstance(e.payload, kind)]


@pytest.fixture
def mesh() -> Mesh:
    return Mesh()


def _routed(workflow: str = "support-triage", text: str = "How do I reset my password?") -> Any:
    fields: dict[str, JsonValue] = {"amount": 300.0} if workflow == "procurement" else {}
    event = new_event(
        RequestRouted(workflow=workflow, confidence=0.9, reason="test", text=text, fields=fields),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1"),
    )
    return REQUESTS_ROUTED.adapter.validate_json(event.model_dump_json())


async def _asked(mesh: Mesh, routed: Envelope[Any]) -> ToolCallRequested:
    await mesh.engine.start(routed)
    [call] = [e.payload for e in mesh.published(ToolCallRequested)]
    return call  # type: ignore[no-any-return]


async def _timed_out(mesh: Mesh) -> Any:
    """The timeout the sweeper published, as the orchestrator's consumer reads it."""
    [timeout] = mesh.published(ToolCallFailed)
    return TOOL_RESULTS.adapter.validate_json(timeout.model_dump_json())


async def test_a_call_past_its_deadline_is_retried_with_the_same_idempotency_key(
    mesh: Mesh,
) -> None:
    routed = _routed()
    call = await _asked(mesh, routed)

    mesh.clock.advance(DEADLINE_S - 0.5)
    assert await mesh.sweeper.sweep() == {}
    assert mesh.publisher.events == []
    mesh.clock.advance(1)
    assert await mesh.sweeper.sweep() == {"timed_out": 1}
    timeout = await _timed_out(mesh)

    assert timeout.payload.call_id == call.call_id
    assert timeout.payload.error_code is ToolErrorCode.TIMEOUT
    assert timeout.payload.retryable
    assert (timeout.tenant, timeout.principal) == (routed.tenant, routed.principal)
    assert await mesh.sweeper.sweep() == {}, "claimed: not due again before its lease ends"
    await mesh.engine.resume(timeout)
    [retry] = [e.payload for e in mesh.published(ToolCallRequested)]
    state = await mesh.engine.state(routed.workflow_id)
    assert state is not None
    assert retry.call_id == call_id_for(
        routed.workflow_id, "search_kb_retry", state.values["pause_key"]
    )
    assert retry.idempotency_key == call.idempotency_key
    assert ("search_kb", "tool_failed") in [
        (h["step"], h["event"]) for h in state.values["history"]
    ]


async def test_a_late_genuine_answer_after_the_deadline_changes_nothing(mesh: Mesh) -> None:
    routed = _routed()
    call = await _asked(mesh, routed)
    mesh.clock.advance(DEADLINE_S + 1)
    await mesh.sweeper.sweep()
    await mesh.engine.resume(await _timed_out(mesh))
    mesh.publisher.take()
    before = await mesh.engine.state(routed.workflow_id)

    late = routed.follow(
        ToolCallCompleted(call_id=call.call_id, tool=call.tool, result={"hits": []}, duration_ms=9)
    )
    await mesh.engine.resume(late)  # repeated, not refused: the run did ask it once

    after = await mesh.engine.state(routed.workflow_id)
    assert before is not None
    assert after is not None
    assert after.config == before.config
    assert mesh.publisher.events == []
    assert mesh.publisher.audits == []


async def test_the_retry_past_its_deadline_goes_to_the_declared_recovery_a_person(
    mesh: Mesh,
) -> None:
    routed = _routed()
    await _asked(mesh, routed)
    for _ in range(2):  # the call, then its retry
        mesh.clock.advance(DEADLINE_S + 1)
        assert await mesh.sweeper.sweep() == {"timed_out": 1}
        await mesh.engine.resume(await _timed_out(mesh))

    [review] = [e.payload for e in mesh.published(ReviewRequested)]
    assert review.rule == "support.human_triage"
    assert mesh.wakeups.rows == {}, "a run at a review waits on hitl's expiry, not a timer"


async def test_an_answer_in_time_moves_the_deadline_on(mesh: Mesh) -> None:
    routed = _routed("procurement", "Please raise a purchase order for 3 desks from Acme, $300")
    call = await _asked(mesh, routed)
    mesh.clock.advance(DEADLINE_S - 1)
    policy: dict[str, JsonValue] = {"within_policy": True, "flags": [], "approval_limit": 5_000.0}
    answer = routed.follow(
        ToolCallCompleted(call_id=call.call_id, tool=call.tool, result=policy, duration_ms=3)
    )
    await mesh.engine.resume(answer)
    [order] = [e.payload for e in mesh.published(ToolCallRequested)]
    assert order.tool == "erp.create_purchase_order"

    mesh.clock.advance(2)  # past the first call's deadline, not the next one's
    assert await mesh.sweeper.sweep() == {}
    assert mesh.publisher.events == []


async def test_a_run_stopped_between_steps_is_run_on_by_the_sweeper() -> None:
    saver = InMemorySaver()
    healthy = build_graphs(checkpointer=saver, gates=GatePolicy.load())["procurement"]
    crashed = healthy.builder.compile(checkpointer=saver, interrupt_after=["read_request"])
    first = Mesh({"procurement": crashed}, saver)

    async def died_before_catching_up(_cause: Any, _graph: Any, _config: Any, snapshot: Any) -> Any:
        return snapshot  # the process is gone before it could run the next step

    first.engine._caught_up = died_before_catching_up  # type: ignore[method-assign,assignment]
    routed = _routed("procurement", "Please raise a purchase order for 3 desks from Acme, $300")
    await first.engine.start(routed)
    assert first.published(ToolCallRequested) == []

    # A new process on the same store: no event for the run will come again.
    second = Mesh({"procurement": healthy}, saver)
    second.wakeups, second.clock = first.wakeups, first.clock
    second.sweeper = Sweeper(
        second.engine_with({"procurement": healthy}),
        second.wakeups,
        lease_s=STALL_S,
        clock=second.clock,
    )
    second.clock.advance(STALL_S - 1)
    assert await second.sweeper.sweep() == {}
    second.clock.advance(2)
    assert await second.sweeper.sweep() == {"resumed": 1}

    [call] = [e.payload for e in second.published(ToolCallRequested)]
    assert call.tool == "procurement.check_policy"
    assert first.wakeups.rows[str(routed.workflow_id)][1].wake is Wake.DEADLINE


async def test_a_finished_run_is_deleted_after_its_ttl(mesh: Mesh) -> None:
    routed = _routed()
    call = await _asked(mesh, routed)
    hits: dict[str, JsonValue] = {
        "hits": [{"id": "kb-001", "title": "Reset", "answer": "Open Settings", "score": 0.5}]
    }
    answer = routed.follow(
        ToolCallCompleted(call_id=call.call_id, tool=call.tool, result=hits, duration_ms=3)
    )
    await mesh.engine.resume(answer)
    assert mesh.published(WorkflowCompleted)

    mesh.clock.advance(TTL_S - 1)
    assert await mesh.sweeper.sweep() == {}
    assert await mesh.engine.state(routed.workflow_id) is not None
    mesh.clock.advance(2)
    assert await mesh.sweeper.sweep() == {"expired": 1}

    assert await mesh.engine.state(routed.workflow_id) is None
    assert mesh.wakeups.rows == {}
    assert mesh.publisher.events == []


async def test_a_deadline_claimed_as_the_answer_came_times_out_nothing(mesh: Mesh) -> None:
    routed = _routed("procurement", "Please raise a purchase order for 3 desks from Acme, $300")
    call = await _asked(mesh, routed)
    mesh.clock.advance(DEADLINE_S + 1)
    [claimed] = await mesh.wakeups.claim(mesh.clock().timestamp(), 1e12, 10)
    policy: dict[str, JsonValue] = {"within_policy": True, "flags": [], "approval_limit": 5e3}
    answer = routed.follow(
        ToolCallCompleted(call_id=call.call_id, tool=call.tool, result=policy, duration_ms=3)
    )
    await mesh.engine.resume(answer)  # on to the order, before the claim is acted on
    mesh.publisher.take()

    woke = await mesh.engine.wake(routed.workflow_id, claimed.wake, claimed.pause)

    assert woke == "rescheduled"
    assert mesh.publisher.events == []
    mesh.clock.advance(DEADLINE_S + 1)  # the order's own deadline does pass
    assert await mesh.sweeper.sweep() == {"timed_out": 1}
    [timeout] = mesh.published(ToolCallFailed)
    assert timeout.payload.tool == "erp.create_purchase_order"


async def test_a_timeout_that_cannot_be_published_is_tried_again_after_30_s(mesh: Mesh) -> None:
    routed = _routed()
    await _asked(mesh, routed)
    mesh.clock.advance(DEADLINE_S + 1)
    working = mesh.publisher.publish_all

    async def broker_down(_events: Any) -> None:
        raise ConnectionError("the broker is down")

    mesh.publisher.publish_all = broker_down  # type: ignore[method-assign,assignment]
    assert await mesh.sweeper.sweep() == {"failed": 1}
    mesh.publisher.publish_all = working  # type: ignore[method-assign]
    mesh.clock.advance(29)
    assert await mesh.sweeper.sweep() == {}
    mesh.clock.advance(2)
    assert await mesh.sweeper.sweep() == {"timed_out": 1}
