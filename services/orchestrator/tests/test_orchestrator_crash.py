"""A run stopped between two steps (as a crash leaves it) is finished by the redelivery."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    RequestRouted,
    ToolCallCompleted,
    ToolCallRequested,
    WorkflowCompleted,
)
from pactmesh_contracts.topics import REQUESTS_ROUTED, TOOL_RESULTS
from pactmesh_kit.auth import load_access_policy
from pactmesh_orchestrator.domain.engine import Engine, call_id_for
from pactmesh_orchestrator.domain.workflows import build_graphs
from pactmesh_orchestrator.testing import CollectingPublisher
from pactmesh_workflows.gates import GatePolicy


class NoOutbox:
    async def published(self, thread_id: str, checkpoint_id: str) -> bool:
        return False

    async def mark(self, thread_id: str, checkpoint_id: str) -> None:
        return None


def _routed() -> Envelope[Any]:
    event = new_event(
        RequestRouted(
            workflow="procurement",
            confidence=0.9,
            reason="test",
            text="Please raise a purchase order for 3 desks from Acme, $900 in total",
            fields={"amount": 900.0},
        ),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="u"),
    )
    return REQUESTS_ROUTED.adapter.validate_json(event.model_dump_json())


async def test_a_run_stopped_between_steps_is_finished_by_the_redelivered_event() -> None:
    saver = InMemorySaver()
    # The first process stops right after read_request: a checkpoint with next steps
    # pending and no pause, as a kill -9 between two checkpointed steps leaves it.
    healthy = build_graphs(checkpointer=saver, gates=GatePolicy.load())["procurement"]
    crashed = healthy.builder.compile(checkpointer=saver, interrupt_after=["read_request"])
    first = Engine(
        graphs={"procurement": crashed},
        checkpointer=saver,
        publisher=CollectingPublisher(),
        outbox=NoOutbox(),
        reviewers=load_access_policy(),
        tool_timeout_s=5,
    )

    async def died_before_catching_up(_cause: Any, _graph: Any, _config: Any, snapshot: Any) -> Any:
        return snapshot  # the process is gone before it could run the next step

    first._caught_up = died_before_catching_up  # type: ignore[method-assign]
    event = _routed()
    await first.start(event)
    stopped = await crashed.aget_state({"configurable": {"thread_id": str(event.workflow_id)}})
    assert stopped.next == ("check_policy",)
    assert not stopped.interrupts

    # The restarted process receives the same routed event again.
    publisher = CollectingPublisher()
    second = Engine(
        graphs={"procurement": healthy},
        checkpointer=saver,
        publisher=publisher,
        outbox=NoOutbox(),
        reviewers=load_access_policy(),
        tool_timeout_s=5,
    )
    await second.start(event)

    [call] = [e.payload for e in publisher.events if isinstance(e.payload, ToolCallRequested)]
    assert call.tool == "procurement.check_policy"
    key = stopped.values["pause_key"]
    assert call.call_id == call_id_for(event.workflow_id, "check_policy", key)


class Died(BaseException):
    """The process is gone: nothing after this point runs or is written."""


def _engine(
    saver: InMemorySaver, graphs: Any, publisher: CollectingPublisher, **options: Any
) -> Engine:
    """An orchestrator process's engine on ``saver`` (a restarted one shares it)."""
    return Engine(
        graphs=graphs,
        checkpointer=saver,
        publisher=publisher,
        outbox=NoOutbox(),
        reviewers=load_access_policy(),
        tool_timeout_s=5,
        **options,
    )


class MortalSaver(InMemorySaver):
    """A saver that writes nothing once its process has died (LangGraph would otherwise
    write the checkpoint on its way out of the interrupted run, which a kill -9 never
    lets it do)."""

    dead = False

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if self.dead:
            return config
        return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: Any, writes: Any, task_id: str, task_path: str = ""
    ) -> None:
        if not self.dead:
            await super().aput_writes(config, writes, task_id, task_path)


async def test_a_run_killed_before_its_first_pause_keeps_its_pause_key() -> None:
    """With checkpoints only at pauses (durability "exit"), the run's initial state, and
    with it the random key its call ids derive from, is still checkpointed first: the
    redelivered start recomputes the first segment with the same key."""
    saver = MortalSaver()
    graphs = build_graphs(checkpointer=saver, gates=GatePolicy.load())

    def engine(publisher: CollectingPublisher) -> Engine:
        return _engine(saver, graphs, publisher, durability="exit")

    def die(_workflow_id: uuid.UUID) -> None:
        saver.dead = True
        raise Died

    first = engine(CollectingPublisher())
    first._after_step = die  # killed after the first step, before any pause
    event = _routed()
    with pytest.raises(Died):
        await first.start(event)
    saver.dead = False  # the restarted process, on the same store
    stored = await saver.aget_tuple({"configurable": {"thread_id": str(event.workflow_id)}})
    assert stored is not None, "the initial state was checkpointed before the first step"
    key = stored.checkpoint["channel_values"]["pause_key"]

    publisher = CollectingPublisher()
    await engine(publisher).start(event)  # the same routed event, delivered again
    [call] = [e.payload for e in publisher.events if isinstance(e.payload, ToolCallRequested)]
    assert call.call_id == call_id_for(event.workflow_id, "check_policy", key)


class DiesBeforeTheCheckpoint(MortalSaver):
    """A saver whose process dies, once armed, at the next checkpoint it is asked to
    write: the step's task has finished and its writes are stored (``put_writes``), the
    checkpoint that applies them is never written."""

    armed = False

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        if self.armed:
            self.armed, self.dead = False, True
        if self.dead:
            raise Died
        return await super().aput(config, checkpoint, metadata, new_versions)


async def test_a_run_killed_between_a_steps_writes_and_its_checkpoint_runs_on() -> None:
    """The latest checkpoint then has no next step and no pause, only a finished task's
    stored writes: the run is not over, and the redelivered answer runs it on (it was
    once taken for a finished run, and completed as failed)."""
    saver = DiesBeforeTheCheckpoint()
    graphs = build_graphs(checkpointer=saver, gates=GatePolicy.load())

    def engine(publisher: CollectingPublisher) -> Engine:
        return _engine(saver, graphs, publisher)

    event = _routed()
    started = CollectingPublisher()
    await engine(started).start(event)
    [call] = [e for e in started.events if isinstance(e.payload, ToolCallRequested)]
    assert call.payload.tool == "procurement.check_policy"
    answer = TOOL_RESULTS.adapter.validate_json(
        call.follow(
            ToolCallCompleted(
                call_id=call.payload.call_id,
                tool=call.payload.tool,
                result={"within_policy": True, "flags": [], "approval_limit": 10000.0},
                duration_ms=1,
            )
        ).model_dump_json()
    )

    saver.armed = True
    with pytest.raises(Died):
        await engine(CollectingPublisher()).resume(answer)
    saver.dead = False  # the restarted process, on the same store
    config = {"configurable": {"thread_id": str(event.workflow_id)}}
    stopped = await graphs["procurement"].aget_state(config)  # type: ignore[arg-type]
    assert (stopped.next, stopped.interrupts) == ((), ())
    assert [t.name for t in stopped.tasks] == ["check_policy"]

    publisher = CollectingPublisher()
    await engine(publisher).resume(answer)  # the same answer, delivered again
    assert not [e for e in publisher.events if isinstance(e.payload, WorkflowCompleted)]
    [following] = [e.payload for e in publisher.events if isinstance(e.payload, ToolCallRequested)]
    assert following.tool == "erp.create_purchase_order"
