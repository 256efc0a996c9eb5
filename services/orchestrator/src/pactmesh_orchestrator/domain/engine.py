"""Drives workflow graphs from events: start on a routed request, resume on a tool
result, and publish what each new checkpoint implies (a tool call, or completion).

Tokens a node streams (LangGraph's custom stream, ``{"kind": "token", ...}``) are
published as ``WorkflowToken`` events as they come (gathered over ``token_window_s``,
see ``tokens``), before the checkpoint's events. They are best-effort, outside the
outbox: a replayed step may send them again.

Events are handed to the producer in order without waiting for each acknowledgement
(one round trip per step, not per event); a step's outbox mark is written only once
every event of the step is acknowledged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Sequence
from datetime import datetime
from typing import Any, Protocol, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, StateSnapshot
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import (
    Outcome,
    RequestRouted,
    RequestStatus,
    ReviewDecided,
    ReviewPriority,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    WorkflowCompleted,
    WorkflowProgress,
    WorkflowToken,
)
from pactmesh_workflows.state import (
    ReviewAnswer,
    ReviewRequest,
    ToolAnswer,
    ToolRequest,
    WorkflowState,
)

from pactmesh_orchestrator.domain.tokens import TokenStream

logger = logging.getLogger(__name__)

SERVICE = "orchestrator"
_CALL_NAMESPACE = uuid.UUID("5b0f3c4e-8e1a-4f7e-9a59-4f1b0c1d2e3f")
_REVIEW_NAMESPACE = uuid.UUID("0e8b2f5a-3c1d-4e6f-8a9b-7c6d5e4f3a2b")


class Publisher(Protocol):
    """Publishes events durably, in the order they are handed over."""

    async def send(self, event: Envelope[Any]) -> Awaitable[object]:
        """Hand ``event`` over and return at once; await the result for its ack."""
        ...

    async def publish_all(self, events: Sequence[Envelope[Any]]) -> None:
        """Publish ``events`` in order; return once every one is acknowledged."""
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


def review_id_for(workflow_id: uuid.UUID, step: str, attempt: int) -> uuid.UUID:
    """The same review id for the same gate and attempt of the same run."""
    return uuid.uuid5(_REVIEW_NAMESPACE, f"{workflow_id}:{step}:{attempt}")


def _pause_id(workflow_id: uuid.UUID, value: dict[str, Any]) -> uuid.UUID:
    """The id an answer to this pause carries: a call id or a review id."""
    if value.get("kind") == "review":
        review = ReviewRequest.model_validate(value)
        return review_id_for(workflow_id, review.step, review.attempt)
    return call_id_for(workflow_id, ToolRequest.model_validate(value).step)


def _marker(snapshot: StateSnapshot) -> str:
    """What was published for: the checkpoint and the pauses pending at it.

    A node that pauses twice (a gate escalating after an expiry) stays on the same
    checkpoint with a new pending interrupt, so the checkpoint id alone would wrongly
    say its new request was already published.
    """
    checkpoint_id = str(snapshot.config["configurable"]["checkpoint_id"])
    pending = ",".join(sorted(i.id for i in snapshot.interrupts))
    return f"{checkpoint_id}|{pending}" if pending else checkpoint_id


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
        token_window_s: float = 0.0,
    ) -> None:
        self._graphs = graphs
        self._checkpointer = checkpointer
        self._publisher = publisher
        self._outbox = outbox
        self._tool_timeout_s = tool_timeout_s
        self._token_window_s = token_window_s

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
        if not _started(await self._checkpointer.aget_tuple(config)):
            running = await self._publisher.send(
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
                "tenant": event.tenant,
                "text": routed.text,
                "fields": dict(routed.fields),
                "metadata": dict(routed.metadata),
                "tool_results": {},
                "steps": 0,
                "confidence": routed.confidence,
                "needs_human": routed.needs_human,
                "history": [],
            }
            await self._run(event, graph, initial, config)
            await running
        snapshot = await self._caught_up(event, graph, config, await graph.aget_state(config))
        await self._emit(event, snapshot)

    async def resume(self, event: Envelope[ToolCallCompleted | ToolCallFailed]) -> None:
        """Resume the run waiting for this tool result; a duplicate changes nothing."""
        await self._resume(event, event.payload.call_id, _tool_answer(event).model_dump())

    async def decide(self, event: Envelope[ReviewDecided]) -> None:
        """Resume the gate waiting for this review; a duplicate changes nothing."""
        decided = event.payload
        answer = ReviewAnswer(
            decision=decided.decision.value,
            edited_action=dict(decided.edited_action)
            if decided.edited_action is not None
            else None,
            reviewer=decided.reviewer,
            comment=decided.comment,
        )
        await self._resume(event, decided.review_id, answer.model_dump())

    async def _resume(
        self, event: Envelope[Any], pause_id: uuid.UUID, answer: dict[str, Any]
    ) -> None:
        graph = await self._graph_of(event.workflow_id)
        config = _config(event.workflow_id)
        snapshot = await graph.aget_state(config)
        waiting = [
            i for i in snapshot.interrupts if _pause_id(event.workflow_id, i.value) == pause_id
        ]
        if waiting:
            resume: Command[Any] = Command(resume={waiting[0].id: answer})
            await self._run(event, graph, resume, config)
            snapshot = await graph.aget_state(config)
        else:
            logger.info("ignoring an answer to %s, which nothing waits for", pause_id)
        snapshot = await self._caught_up(event, graph, config, snapshot)
        await self._emit(event, snapshot)

    async def _caught_up(
        self, cause: Envelope[Any], graph: Graph, config: RunnableConfig, snapshot: StateSnapshot
    ) -> StateSnapshot:
        """Finish a run that a crash stopped between two steps.

        Steps are checkpointed one by one, so a process killed mid-run leaves a checkpoint
        with steps still to run and nothing to wait for. The redelivered event that
        started that run finds it here and runs it on from the checkpoint; without this
        the workflow would wait forever.
        """
        if snapshot.next and not snapshot.interrupts:
            logger.warning(
                "resuming %s, stopped mid-run before %s", cause.workflow_id, snapshot.next
            )
            await self._run(cause, graph, None, config)
            snapshot = await graph.aget_state(config)
        return snapshot

    async def _run(
        self, cause: Envelope[Any], graph: Graph, graph_input: Any, config: RunnableConfig
    ) -> None:
        """Run ``graph`` to its next pause or end, publishing streamed tokens in order."""

        async def send(token: WorkflowToken) -> Awaitable[object]:
            return await self._publisher.send(cause.follow(token))

        tokens = TokenStream(send, window_s=self._token_window_s)
        try:
            async for mode, chunk in graph.astream(
                graph_input, config, stream_mode=["custom", "updates"], durability="sync"
            ):
                if mode == "custom" and isinstance(chunk, dict) and chunk.get("kind") == "token":
                    await tokens.add(chunk)
        except BaseException:
            tokens.abandon()
            raise
        await tokens.close()

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
        marker = _marker(snapshot)
        if await self._outbox.published(thread_id, marker):
            return
        await self._publisher.publish_all(self._outgoing(cause, snapshot))
        await self._outbox.mark(thread_id, marker)

    def _outgoing(self, cause: Envelope[Any], snapshot: StateSnapshot) -> list[Envelope[Any]]:
        values = cast(WorkflowState, snapshot.values)
        workflow = values["workflow"]
        if snapshot.interrupts:
            events: list[Envelope[Any]] = []
            for pending in snapshot.interrupts:
                events += self._pause_events(cause, workflow, pending.value)
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

    def _pause_events(
        self, cause: Envelope[Any], workflow: str, value: dict[str, Any]
    ) -> list[Envelope[Any]]:
        if value.get("kind") == "review":
            review = ReviewRequest.model_validate(value)
            return [
                cause.follow(
                    ReviewRequested(
                        review_id=review_id_for(cause.workflow_id, review.step, review.attempt),
                        workflow=workflow,
                        rule=review.rule,
                        summary=review.summary,
                        action_type=review.action_type,
                        proposed_action=review.proposed_action,
                        required_role=review.required_role,
                        expires_at=datetime.fromisoformat(review.expires_at),
                        attempt=review.attempt,
                        priority=ReviewPriority(review.priority),
                    )
                ),
                cause.follow(
                    WorkflowProgress(
                        status=RequestStatus.WAITING_FOR_REVIEW,
                        service=SERVICE,
                        workflow=workflow,
                        detail=f"{review.step}: {review.rule}, for a {review.required_role}",
                    )
                ),
            ]
        request = ToolRequest.model_validate(value)
        return [
            cause.follow(
                ToolCallRequested(
                    call_id=call_id_for(cause.workflow_id, request.step),
                    tool=request.tool,
                    arguments=request.arguments,
                    idempotency_key=f"{cause.workflow_id}:{request.idempotency_scope}",
                    timeout_s=self._tool_timeout_s,
                    workflow=workflow,
                )
            ),
            cause.follow(
                WorkflowProgress(
                    status=RequestStatus.WAITING_FOR_TOOL,
                    service=SERVICE,
                    workflow=workflow,
                    detail=f"{request.step}: waiting for {request.tool}",
                )
            ),
        ]

    async def _publish_unknown_workflow(self, event: Envelope[RequestRouted]) -> None:
        # No graph, so no checkpoint: delivery deduplicates by workflow id instead.
        error = f"workflow {event.payload.workflow!r} is not registered"
        await self._publisher.publish_all(
            [
                event.follow(
                    WorkflowCompleted(
                        workflow=event.payload.workflow,
                        outcome=Outcome.FAILED,
                        error=error,
                        metadata=event.payload.metadata,
                    )
                ),
                event.follow(
                    WorkflowProgress(
                        status=RequestStatus.FAILED,
                        service=SERVICE,
                        workflow=event.payload.workflow,
                        detail=error,
                    )
                ),
            ]
        )


def _started(saved: CheckpointTuple | None) -> bool:
    """Whether a run has a checkpoint with its state (the workflow's name) in it."""
    return saved is not None and "workflow" in saved.checkpoint["channel_values"]


def _tool_answer(event: Envelope[ToolCallCompleted | ToolCallFailed]) -> ToolAnswer:
    payload = event.payload
    if isinstance(payload, ToolCallCompleted):
        return ToolAnswer(ok=True, result=dict(payload.result))
    return ToolAnswer(
        ok=False,
        error_code=payload.error_code.value,
        message=payload.message,
        retryable=payload.retryable,
    )
