"""Drives workflow graphs from events: start on a routed request, resume on a tool
result, and publish what each new checkpoint implies (a tool call, or completion)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import (
    Outcome,
    RequestRouted,
    RequestStatus,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    WorkflowCompleted,
    WorkflowProgress,
)

from pactmesh_orchestrator.domain.state import ToolAnswer, ToolRequest, WorkflowState

logger = logging.getLogger(__name__)

SERVICE = "orchestrator"
_CALL_NAMESPACE = uuid.UUID("5b0f3c4e-8e1a-4f7e-9a59-4f1b0c1d2e3f")


class Publisher(Protocol):
    """Publishes one event durably."""

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish ``event``."""
        ...


class Outbox(Protocol):
    """Remembers which checkpoints' events were published."""

    async def published(self, thread_id: str, checkpoint_id: str) -> bool:
        """Whether they were."""
        ...

    async def mark(self, thread_id: str, checkpoint_id: str) -> None:
        """Record that they were."""
        ...


class UnknownWorkflowRun(LookupError):
    """An event names a workflow run this orchestrator has no checkpoint for."""

    code = "unknown_workflow_run"


def call_id_for(workflow_id: uuid.UUID, step: str) -> uuid.UUID:
    """The same call id for the same step of the same run, however often it is asked."""
    return uuid.uuid5(_CALL_NAMESPACE, f"{workflow_id}:{step}")


def _config(workflow_id: uuid.UUID) -> RunnableConfig:
    return {"configurable": {"thread_id": str(workflow_id)}}


Graph = CompiledStateGraph[Any, Any, Any, Any]


class Engine:
    """Runs every registered workflow against one checkpointer."""

    def __init__(
        self,
        *,
        graphs: dict[str, Graph],
        checkpointer: BaseCheckpointSaver[Any],
        publisher: Publisher,
        outbox: Outbox,
        tool_timeout_s: float,
    ) -> None:
        self._graphs = graphs
        self._checkpointer = checkpointer
        self._publisher = publisher
        self._outbox = outbox
        self._tool_timeout_s = tool_timeout_s

    @property
    def workflows(self) -> tuple[str, ...]:
        """Names of the registered workflows."""
        return tuple(self._graphs)

    async def start(self, event: Envelope[RequestRouted]) -> None:
        """Start the workflow routing chose, unless this run already started."""
        routed = event.payload
        graph = self._graphs.get(routed.workflow)
        if graph is None:
            await self._publish_unknown_workflow(event)
            return
        config = _config(event.workflow_id)
        snapshot = await graph.aget_state(config)
        if not snapshot.values:
            await self._publisher.publish(
                event.follow(
                    WorkflowProgress(
                        status=RequestStatus.RUNNING,
                        service=SERVICE,
                        workflow=routed.workflow,
                        detail=f"started {routed.workflow}",
                    )
                )
            )
            initial: WorkflowState = {
                "workflow": routed.workflow,
                "text": routed.text,
                "fields": dict(routed.fields),
                "metadata": dict(routed.metadata),
                "tool_results": {},
                "steps": 0,
            }
            await graph.ainvoke(initial, config, durability="sync")
            snapshot = await graph.aget_state(config)
        await self._emit(event, snapshot)

    async def resume(self, event: Envelope[ToolCallCompleted | ToolCallFailed]) -> None:
        """Resume the run waiting for this tool result; a duplicate changes nothing."""
        graph = await self._graph_of(event.workflow_id)
        config = _config(event.workflow_id)
        snapshot = await graph.aget_state(config)
        waiting = [
            i
            for i in snapshot.interrupts
            if call_id_for(event.workflow_id, ToolRequest.model_validate(i.value).step)
            == event.payload.call_id
        ]
        if waiting:
            await graph.ainvoke(
                Command(resume=_answer(event).model_dump()), config, durability="sync"
            )
            snapshot = await graph.aget_state(config)
        else:
            logger.info("ignoring duplicate result of call %s", event.payload.call_id)
        await self._emit(event, snapshot)

    async def state(self, workflow_id: uuid.UUID) -> StateSnapshot | None:
        """The run's latest checkpoint, or None if there is none."""
        try:
            graph = await self._graph_of(workflow_id)
        except UnknownWorkflowRun:
            return None
        return await graph.aget_state(_config(workflow_id))

    async def _graph_of(self, workflow_id: uuid.UUID) -> Graph:
        saved = await self._checkpointer.aget_tuple(_config(workflow_id))
        name = saved.checkpoint["channel_values"].get("workflow") if saved else None
        if name not in self._graphs:
            raise UnknownWorkflowRun(f"no run {workflow_id} of a registered workflow")
        return self._graphs[name]

    async def _emit(self, cause: Envelope[Any], snapshot: StateSnapshot) -> None:
        thread_id = str(cause.workflow_id)
        checkpoint_id = str(snapshot.config["configurable"]["checkpoint_id"])
        if await self._outbox.published(thread_id, checkpoint_id):
            return
        for event in self._outgoing(cause, snapshot):
            await self._publisher.publish(event)
        await self._outbox.mark(thread_id, checkpoint_id)

    def _outgoing(self, cause: Envelope[Any], snapshot: StateSnapshot) -> list[Envelope[Any]]:
        values = cast(WorkflowState, snapshot.values)
        workflow = values["workflow"]
        if snapshot.interrupts:
            events: list[Envelope[Any]] = []
            for pending in snapshot.interrupts:
                request = ToolRequest.model_validate(pending.value)
                events.append(
                    cause.follow(
                        ToolCallRequested(
                            call_id=call_id_for(cause.workflow_id, request.step),
                            tool=request.tool,
                            arguments=request.arguments,
                            idempotency_key=f"{cause.workflow_id}:{request.step}",
                            timeout_s=self._tool_timeout_s,
                        )
                    )
                )
                events.append(
                    cause.follow(
                        WorkflowProgress(
                            status=RequestStatus.WAITING_FOR_TOOL,
                            service=SERVICE,
                            workflow=workflow,
                            detail=f"{request.step}: waiting for {request.tool}",
                        )
                    )
                )
            return events
        if snapshot.next:
            return []  # mid-run without a pause cannot be seen with durability="sync"
        outcome = Outcome(values.get("outcome", "failed"))
        return [
            cause.follow(
                WorkflowCompleted(
                    workflow=workflow,
                    outcome=outcome,
                    output=values.get("output", {}),
                    error=values.get("error"),
                    steps=values.get("steps", 0),
                    metadata=values.get("metadata", {}),
                )
            ),
            cause.follow(
                WorkflowProgress(
                    status=RequestStatus.COMPLETED
                    if outcome is Outcome.SUCCEEDED
                    else RequestStatus.FAILED,
                    service=SERVICE,
                    workflow=workflow,
                    detail=values.get("error") or outcome.value,
                )
            ),
        ]

    async def _publish_unknown_workflow(self, event: Envelope[RequestRouted]) -> None:
        # No graph, so no checkpoint: delivery deduplicates by workflow id instead.
        error = f"workflow {event.payload.workflow!r} is not registered"
        await self._publisher.publish(
            event.follow(
                WorkflowCompleted(
                    workflow=event.payload.workflow,
                    outcome=Outcome.FAILED,
                    error=error,
                    metadata=event.payload.metadata,
                )
            )
        )
        await self._publisher.publish(
            event.follow(
                WorkflowProgress(
                    status=RequestStatus.FAILED,
                    service=SERVICE,
                    workflow=event.payload.workflow,
                    detail=error,
                )
            )
        )


def _answer(event: Envelope[ToolCallCompleted | ToolCallFailed]) -> ToolAnswer:
    payload = event.payload
    if isinstance(payload, ToolCallCompleted):
        return ToolAnswer(ok=True, result=dict(payload.result))
    return ToolAnswer(ok=False, error_code=payload.error_code.value, message=payload.message)
