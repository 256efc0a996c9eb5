"""Drives workflow graphs from events: start on a routed request, resume on a tool
result, and publish what each new checkpoint implies (a tool call, or completion).

Tokens a node streams (LangGraph's custom stream, ``{"kind": "token", ...}``) are
published as ``WorkflowToken`` events as they come (gathered over ``token_window_s``,
see ``tokens``), before the checkpoint's events. They are best-effort, outside the
outbox: a replayed step may send them again.

Events are handed to the producer in order without waiting for each acknowledgement
(one round trip per step, not per event); a step's outbox mark is written only once
every event of the step is acknowledged.

An event that would resume a run is checked against the run's checkpoint first
(``answers``): one that answers nothing the run waits for, or comes from someone the run
may not hear from, is audited (``resume.refused`` on the audit topic) and refused with
``AnswerRefused``, which the handler dead-letters; a genuine answer delivered again is
recognised and changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver, CheckpointTuple
from langgraph.graph import START
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command, Durability, StateSnapshot
from opentelemetry import metrics, trace
from opentelemetry.metrics import Meter
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    AuditGateFired,
    AuditRecorded,
    AuditReviewDecided,
    AuditWorkflowCompleted,
    Outcome,
    RequestRouted,
    RequestStatus,
    ReviewDecided,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
    WorkflowCompleted,
    WorkflowProgress,
    WorkflowToken,
)
from pactmesh_contracts.usage import PriceTable, Usage
from pactmesh_kit.audit import audit_of, model_called
from pactmesh_kit.genai import workflow_span
from pactmesh_kit.telemetry import WORKFLOW_ID_ATTRIBUTE
from pactmesh_reasoning.calls import ModelCallLog, model_calls
from pactmesh_workflows.state import (
    FORMAT_VERSION,
    WorkflowState,
    call_id_for,
    new_pause_key,
    pause_id,
    pause_ids,
    pause_of,
    paused_at,
    review_id_for,
)

from pactmesh_orchestrator.domain.answers import (
    Answer,
    ReviewerPolicy,
    answer_refusal,
    envelope_refusal,
    requester_of,
)
from pactmesh_orchestrator.domain.errors import AnswerRefused, UnknownWorkflowRun
from pactmesh_orchestrator.domain.timers import MemoryWakeups, TimerSettings, Wake, Wakeups
from pactmesh_orchestrator.domain.tokens import TokenStream

logger = logging.getLogger(__name__)

__all__ = [
    "AnswerRefused",
    "Engine",
    "Outbox",
    "Publisher",
    "UnknownWorkflowRun",
    "call_id_for",
    "review_id_for",
]

SERVICE = "orchestrator"
WOKEN_BY = Principal(subject="system:orchestrator", roles=("service",))
"""Who a wake-up acts for in a run started before runs recorded their principal."""
REFUSED_ACTION = "resume.refused"
"""The audit action of an event refused for answering nothing its run waits for."""


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


def _marker(snapshot: StateSnapshot) -> str:
    """What was published for: the checkpoint and the pauses pending at it.

    A node that pauses twice (a gate escalating after an expiry) stays on the same
    checkpoint with a new pending interrupt, so the checkpoint id alone would wrongly
    say its new request was already published.
    """
    checkpoint_id = str(snapshot.config["configurable"]["checkpoint_id"])
    pending = ",".join(sorted(i.id for i in snapshot.interrupts))
    return f"{checkpoint_id}|{pending}" if pending else checkpoint_id


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
        reviewers: ReviewerPolicy,
        tool_timeout_s: float,
        token_window_s: float = 0.0,
        durability: Durability = "sync",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        tracer: trace.Tracer | None = None,
        meter: Meter | None = None,
        prices: PriceTable | None = None,
        wakeups: Wakeups | None = None,
        timers: TimerSettings | None = None,
        after_step: Callable[[uuid.UUID], None] | None = None,
    ) -> None:
        """``reviewers`` (the access policy) says who may decide a review; ``clock``
        tells whether a review's deadline has passed when its expiry arrives, and when
        the runs' wake-ups are due; ``tracer`` makes an ``invoke_workflow`` span of each
        run segment, ``meter`` counts workflows entering each state, ``prices`` price the
        model calls audited; ``wakeups`` keeps each run's timer (``timers``), in memory
        unless the store's are given. ``after_step`` (a test hook) is called with the
        run's id after each step the graph streams (a node's update or a pause) and once
        more when a segment has ended (its checkpoint written, nothing published yet)."""
        self._after_step = after_step
        self._wakeups: Wakeups = wakeups if wakeups is not None else MemoryWakeups()
        self._timers = timers or TimerSettings()
        self._graphs = graphs
        self._reviewers = reviewers
        self._clock = clock
        self._checkpointer = checkpointer
        self._publisher = publisher
        self._outbox = outbox
        self._tool_timeout_s = tool_timeout_s
        self._token_window_s = token_window_s
        self._durability: Durability = durability
        self._tracer = tracer or trace.get_tracer(__name__)
        self._prices = prices or PriceTable()
        self._states = (meter or metrics.NoOpMeter(__name__)).create_counter(
            "pactmesh.workflow.transitions",
            unit="{workflow}",
            description="Workflows entering each state (running, waiting, and how they ended)",
        )

    @property
    def workflows(self) -> tuple[str, ...]:
        """Names of the registered workflows."""
        return tuple(self._graphs)

    def _config(self, workflow_id: uuid.UUID) -> RunnableConfig:
        """The run's thread, and the deadline its tool calls are given."""
        return {
            "configurable": {"thread_id": str(workflow_id), "tool_timeout_s": self._tool_timeout_s}
        }

    async def start(self, event: Envelope[RequestRouted]) -> None:
        """Start the workflow routing chose, unless this run already started."""
        routed = event.payload
        graph = self._graphs.get(routed.workflow)
        if graph is None:
            await self._publish_unknown_workflow(event)
            return
        config = self._config(event.workflow_id)
        with self._segment(event, routed.workflow), model_calls() as made:
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
                self._states.add(1, {"pactmesh.workflow": routed.workflow, "state": "running"})
                # With durability "exit" nothing is checkpointed before the first pause,
                # not even the input (LangGraph writes the input checkpoint with every
                # durability but "exit"): the initial state, with the run's random pause_key, is
                # written first, or a start handled again (redelivered after a kill, or
                # by the next owner of a partition while a stalled consumer still runs
                # it) would draw another key, so other call ids.
                if self._durability == "exit":
                    await graph.aupdate_state(config, _initial(event), as_node=START)
                    await self._run(event, graph, None, config)
                else:
                    await self._run(event, graph, _initial(event), config)
                await running
            snapshot = await self._caught_up(event, graph, config, await graph.aget_state(config))
            await self._emit(event, snapshot, self._audits(event, made))

    async def resume(self, event: Envelope[ToolCallCompleted | ToolCallFailed]) -> None:
        """Resume the run waiting for this tool result; a duplicate changes nothing."""
        await self._resume(event, event.payload.call_id, event.payload.model_dump(mode="json"))

    async def decide(self, event: Envelope[ReviewDecided]) -> None:
        """Resume the gate waiting for this review; a duplicate changes nothing."""
        decided = event.payload
        await self._resume(event, decided.review_id, decided.model_dump(mode="json"))

    async def _resume(
        self, event: Envelope[Any], answering: uuid.UUID, answer: dict[str, Any]
    ) -> None:
        """Resume the run with ``event`` if it answers what the run waits for; refuse
        (audited) what answers nothing it asked; let a repeated genuine answer pass."""
        try:
            graph = await self._graph_of(event.workflow_id)
        except UnknownWorkflowRun as exc:
            await self._refuse(event, answering, str(exc))
            raise
        config = self._config(event.workflow_id)
        snapshot = await graph.aget_state(config)
        waiting, reason = self._answered(event, answering, graph, snapshot)
        if reason is not None:
            await self._refuse(event, answering, reason)
            raise AnswerRefused(reason)
        workflow = cast(WorkflowState, snapshot.values)["workflow"]
        # A review can pause a run for hours: the segment it resumes links to the one
        # that paused (its trace context stored with the pause), so the trace reads on.
        links = [p for i in snapshot.interrupts if i.id == waiting and (p := paused_at(i.value))]
        with self._segment(event, workflow, links=links), model_calls() as made:
            audits = self._audits(event, made)
            if waiting is not None:
                if isinstance(event.payload, ReviewDecided):
                    audits.insert(0, event.follow(audit_of(AuditReviewDecided, event.payload)))
                resume: Command[Any] = Command(resume={waiting: answer})
                await self._run(event, graph, resume, config)
                snapshot = await graph.aget_state(config)
                audits += self._audits(event, made)
            else:
                logger.info("ignoring a repeated answer to %s, which nothing waits for", answering)
            snapshot = await self._caught_up(event, graph, config, snapshot)
            await self._emit(event, snapshot, audits)

    def _segment(
        self, cause: Envelope[Any], workflow: str, *, links: Sequence[str] = ()
    ) -> AbstractContextManager[trace.Span]:
        attributes = {WORKFLOW_ID_ATTRIBUTE: str(cause.workflow_id)}
        return workflow_span(self._tracer, workflow=workflow, links=links, attributes=attributes)

    def _audits(self, cause: Envelope[Any], made: ModelCallLog) -> list[Envelope[Any]]:
        """The model calls made so far in this segment, as audit events (taken once)."""
        calls, made.calls[:] = list(made.calls), []
        workflow = getattr(cause.payload, "workflow", None)
        return [
            cause.follow(model_called(c, service=SERVICE, workflow=workflow, prices=self._prices))
            for c in calls
        ]

    def _answered(
        self, event: Envelope[Any], answering: uuid.UUID, graph: Graph, snapshot: StateSnapshot
    ) -> tuple[str | None, str | None]:
        """The interrupt ``event`` answers (None for a repeated answer), or why it may
        not resume the run."""
        values = cast(WorkflowState, snapshot.values)
        if reason := envelope_refusal(event, values):
            return None, reason
        for pending in snapshot.interrupts:
            asked = pause_of(
                pending.value, workflow_id=event.workflow_id, workflow=values["workflow"]
            )
            if pause_id(asked) == answering:
                refusal = answer_refusal(
                    cast(Answer, event.payload),
                    asked,
                    requester=requester_of(values),
                    policy=self._reviewers,
                    now=self._clock(),
                )
                return pending.id, refusal
        if answering in pause_ids(event.workflow_id, graph.nodes, values.get("pause_key")):
            return None, None  # asked by this run once: answered already
        return None, f"{event.type} names {answering}, which run {event.workflow_id} never asked"

    async def _refuse(self, event: Envelope[Any], answering: uuid.UUID, reason: str) -> None:
        """Audit a refused event (what it claimed, and why it was refused)."""
        logger.warning(
            "refused %s %s for run %s: %s", event.type, event.event_id, event.workflow_id, reason
        )
        detail: dict[str, Any] = {
            "event_type": event.type,
            "event_id": str(event.event_id),
            "answering": str(answering),
            "tenant": event.tenant,
            "principal": event.principal.model_dump(mode="json"),
            "reason": reason,
        }
        if isinstance(event.payload, ReviewDecided):
            detail["reviewer"] = event.payload.reviewer
            detail["decision"] = event.payload.decision.value
        audit = AuditRecorded(service=SERVICE, action=REFUSED_ACTION, detail=detail)
        await self._publisher.publish_all([event.follow(audit)])

    async def _caught_up(
        self, cause: Envelope[Any], graph: Graph, config: RunnableConfig, snapshot: StateSnapshot
    ) -> StateSnapshot:
        """Finish a run that stopped between two steps.

        A checkpoint with steps still to run and nothing to wait for is what a process
        killed mid-run leaves with ``durability="sync"`` (every step checkpointed), and
        what a step that raised or was cancelled leaves with either durability
        (LangGraph writes the checkpoint on its way out). A kill between a step's stored
        writes and the checkpoint that applies them leaves one with no next step, only
        that finished step (``_mid_run``), whose writes LangGraph applies when run on.
        The redelivered event that started that segment finds it here and runs it on
        from the checkpoint; without this the workflow would wait forever (or, in the
        second case, be taken for finished). (With ``"exit"`` a killed process leaves
        the last pause's checkpoint instead, which the redelivered event resumes again.)
        """
        if _mid_run(snapshot):
            logger.warning(
                "resuming %s, stopped mid-run before %s",
                cause.workflow_id,
                snapshot.next or [task.name for task in snapshot.tasks],
            )
            await self._run(cause, graph, None, config)
            snapshot = await graph.aget_state(config)
        return snapshot

    async def _run(
        self, cause: Envelope[Any], graph: Graph, graph_input: Any, config: RunnableConfig
    ) -> None:
        """Run ``graph`` to its next pause or end, publishing streamed tokens in order.

        The run's row says ``stall`` until the segment ends: if this process dies
        meanwhile, the sweeper runs it on (``timers``)."""
        stalled_at = self._now() + self._timers.stall_after_s
        await self._wakeups.set(str(cause.workflow_id), stalled_at, Wake.STALL)

        async def send(token: WorkflowToken) -> Awaitable[object]:
            return await self._publisher.send(cause.follow(token))

        tokens = TokenStream(send, window_s=self._token_window_s)
        try:
            async for mode, chunk in graph.astream(
                graph_input, config, stream_mode=["custom", "updates"], durability=self._durability
            ):
                if mode == "custom" and isinstance(chunk, dict) and chunk.get("kind") == "token":
                    await tokens.add(chunk)
                elif mode == "updates" and self._after_step is not None:
                    self._after_step(cause.workflow_id)
        except BaseException:
            tokens.abandon()
            raise
        await tokens.close()
        if self._after_step is not None:
            self._after_step(cause.workflow_id)

    async def state(self, workflow_id: uuid.UUID) -> StateSnapshot | None:
        """The run's latest checkpoint, or None if there is none."""
        try:
            graph = await self._graph_of(workflow_id)
        except UnknownWorkflowRun:
            return None
        return await graph.aget_state(self._config(workflow_id))

    async def _graph_of(self, workflow_id: uuid.UUID) -> Graph:
        saved = await self._checkpointer.aget_tuple(self._config(workflow_id))
        name = saved.checkpoint["channel_values"].get("workflow") if saved else None
        if name not in self._graphs:
            raise UnknownWorkflowRun(f"no run {workflow_id} of a registered workflow")
        return self._graphs[name]

    async def _emit(
        self, cause: Envelope[Any], snapshot: StateSnapshot, audits: Sequence[Envelope[Any]] = ()
    ) -> None:
        """Publish what the checkpoint implies (once per checkpoint and pause), preceded by
        the segment's audit events (the model calls it made, the decision it took in)."""
        thread_id = str(cause.workflow_id)
        marker = _marker(snapshot)
        if await self._outbox.published(thread_id, marker):
            if audits:
                await self._publisher.publish_all(audits)
        else:
            outgoing = self._outgoing(cause, snapshot)
            await self._publisher.publish_all([*audits, *outgoing])
            self._count(outgoing)
            await self._outbox.mark(thread_id, marker)
        await self._schedule(cause, snapshot)

    def _now(self) -> float:
        return self._clock().timestamp()

    async def _schedule(self, cause: Envelope[Any], snapshot: StateSnapshot) -> None:
        """Set the run's wake-up for where it stands: the deadline of the tool calls it
        waits for, none at a review (hitl expires those), its expiry once finished."""
        thread_id = str(cause.workflow_id)
        if snapshot.interrupts:
            calls = self._waiting_calls(cause.workflow_id, snapshot)
            if not calls:
                await self._wakeups.clear(thread_id)
                return
            longest = max(call.timeout_s for call in calls)
            due = self._now() + longest + self._timers.deadline_margin_s
            await self._wakeups.set(thread_id, due, Wake.DEADLINE, _marker(snapshot))
        elif _finished(snapshot):
            due = self._now() + self._timers.finished_ttl_s
            await self._wakeups.set(thread_id, due, Wake.EXPIRE)

    def _waiting_calls(
        self, workflow_id: uuid.UUID, snapshot: StateSnapshot
    ) -> list[ToolCallRequested]:
        """The tool calls the run waits for."""
        workflow = cast(WorkflowState, snapshot.values)["workflow"]
        pauses = [
            pause_of(i.value, workflow_id=workflow_id, workflow=workflow)
            for i in snapshot.interrupts
        ]
        return [p for p in pauses if isinstance(p, ToolCallRequested)]

    async def wake(self, workflow_id: uuid.UUID, wake: Wake, pause: str = "") -> str:
        """Act on the run's due wake-up (``timers``); what was done: ``timed_out`` (a
        timeout published for each call past its deadline), ``rescheduled`` (the
        deadline of a pause the run has left: ``pause`` is the one it was set for),
        ``expired`` (a finished run deleted), ``resumed`` (run on from its checkpoint,
        its events published), or ``gone`` (no run of a registered workflow)."""
        thread_id = str(workflow_id)
        try:
            graph = await self._graph_of(workflow_id)
        except UnknownWorkflowRun:
            await self._wakeups.clear(thread_id)
            return "gone"
        config = self._config(workflow_id)
        snapshot = await graph.aget_state(config)
        cause = _woken(workflow_id, cast(WorkflowState, snapshot.values))
        finished = _finished(snapshot)
        if wake is Wake.EXPIRE and finished:
            # The checkpoints first: a failure after it leaves a row that finds no run.
            await self._checkpointer.adelete_thread(thread_id)
            await self._wakeups.purge(thread_id)
            return "expired"
        if wake is Wake.DEADLINE and (calls := self._waiting_calls(workflow_id, snapshot)):
            if pause != _marker(snapshot):
                # Claimed just as an answer moved the run on to its next call: that call
                # has a deadline of its own, counted from now at the latest.
                await self._schedule(cause, snapshot)
                return "rescheduled"
            late = ", ".join(f"{c.tool} {c.call_id}" for c in calls)
            logger.warning("run %s: %s past the deadline; answered as timed out", workflow_id, late)
            await self._publisher.publish_all([cause.follow(_timed_out(c)) for c in calls])
            return "timed_out"
        workflow = cast(WorkflowState, snapshot.values)["workflow"]
        with self._segment(cause, workflow), model_calls() as made:
            snapshot = await self._caught_up(cause, graph, config, snapshot)
            await self._emit(cause, snapshot, self._audits(cause, made))
        return "resumed"

    def _count(self, outgoing: Sequence[Envelope[Any]]) -> None:
        for event in outgoing:
            payload = event.payload
            if isinstance(payload, WorkflowProgress) and payload.workflow:
                state = payload.status.value
                self._states.add(1, {"pactmesh.workflow": payload.workflow, "state": state})

    def _outgoing(self, cause: Envelope[Any], snapshot: StateSnapshot) -> list[Envelope[Any]]:
        values = cast(WorkflowState, snapshot.values)
        workflow = values["workflow"]
        if snapshot.interrupts:
            events: list[Envelope[Any]] = []
            for pending in snapshot.interrupts:
                events += self._pause_events(cause, workflow, pending.value)
            return events
        if _mid_run(snapshot):
            return []  # mid-run without a pause: ``_caught_up`` ran it on before this
        outcome = Outcome(values.get("outcome", "failed"))
        spent = values.get("usage")
        return [
            cause.follow(
                AuditWorkflowCompleted(
                    workflow=workflow,
                    outcome=outcome,
                    error=values.get("error"),
                    steps=values.get("steps", 0),
                    usage=Usage.model_validate(spent) if spent else None,
                )
            ),
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

    def _pause_events(self, cause: Envelope[Any], workflow: str, value: Any) -> list[Envelope[Any]]:
        pause = pause_of(value, workflow_id=cause.workflow_id, workflow=workflow)
        events: list[Envelope[Any]] = []
        if isinstance(pause, ReviewRequested):
            status = RequestStatus.WAITING_FOR_REVIEW
            detail = f"{pause.rule}, for a {pause.required_role}"
            events.append(cause.follow(audit_of(AuditGateFired, pause)))
        else:
            status = RequestStatus.WAITING_FOR_TOOL
            step = pause.idempotency_key.split(":", 1)[-1]
            detail = f"{step}: waiting for {pause.tool}"
        progress = WorkflowProgress(
            status=status, service=SERVICE, workflow=workflow, detail=detail
        )
        return [*events, cause.follow(pause), cause.follow(progress)]

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


def _woken(workflow_id: uuid.UUID, values: WorkflowState) -> Envelope[Any]:
    """The cause of what a wake-up publishes: an event of the run's tenant and
    principal (not itself published)."""
    workflow = values["workflow"]
    progress = WorkflowProgress(
        status=RequestStatus.RUNNING, service=SERVICE, workflow=workflow, detail="woken"
    )
    principal = requester_of(values) or WOKEN_BY
    return new_event(
        progress,
        workflow_id=workflow_id,
        tenant=values.get("tenant", "default"),
        principal=principal,
    )


def _timed_out(call: ToolCallRequested) -> ToolCallFailed:
    """What a tool call past its deadline is answered with: a retryable timeout."""
    return ToolCallFailed(
        call_id=call.call_id,
        tool=call.tool,
        error_code=ToolErrorCode.TIMEOUT,
        message=f"no answer within {call.timeout_s:g} s and the orchestrator's margin",
        retryable=True,
    )


def _initial(event: Envelope[RequestRouted]) -> WorkflowState:
    routed = event.payload
    return {
        "format": FORMAT_VERSION,
        "workflow": routed.workflow,
        "tenant": event.tenant,
        "requester": event.principal.model_dump(mode="json"),
        "pause_key": new_pause_key(),
        "text": routed.text,
        "fields": dict(routed.fields),
        "metadata": dict(routed.metadata),
        "tool_results": {},
        "steps": 0,
        "confidence": routed.confidence,
        "needs_human": routed.needs_human,
        "history": [],
        "usage": (routed.usage or Usage()).model_dump(),
    }


def _mid_run(snapshot: StateSnapshot) -> bool:
    """Whether the run has steps to go and waits for nothing: a step next, or a step
    that finished with its writes stored but not yet checkpointed (LangGraph then
    reports no next step; only the finished task says the run is not over)."""
    return not snapshot.interrupts and bool(snapshot.next or snapshot.tasks)


def _finished(snapshot: StateSnapshot) -> bool:
    """Whether the run has ended: nothing it waits for, and not mid-run."""
    return not snapshot.interrupts and not _mid_run(snapshot)


def _started(saved: CheckpointTuple | None) -> bool:
    """Whether a run has a checkpoint with its state (the workflow's name) in it."""
    return saved is not None and "workflow" in saved.checkpoint["channel_values"]
