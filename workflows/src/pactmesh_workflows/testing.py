"""Running one workflow's graph in a test, without the engine or the mesh.

``ScriptedTools`` is a ``ToolCaller`` that answers each call on the spot from a script
(so a graph runs straight through its tool steps), and ``GraphRun`` starts a run, reads
its state and answers the reviews it pauses for, as the hitl service would.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from pactmesh_contracts.events import (
    ReviewDecided,
    ReviewDecision,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
)
from pydantic import JsonValue

from pactmesh_workflows.definition import WorkflowDefinition
from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.state import FORMAT_VERSION, WorkflowState, pause_of


@dataclass(frozen=True)
class Failure:
    """A scripted tool failure."""

    code: ToolErrorCode = ToolErrorCode.BACKEND_ERROR
    message: str = "backend answered 503"
    retryable: bool = True


Answer = (
    dict[str, JsonValue] | Failure | Callable[[dict[str, Any]], "dict[str, JsonValue] | Failure"]
)
"""A result, a failure, or a function of the call's arguments returning either."""


@dataclass
class ScriptedTools:
    """Answers each tool call at once: from ``queued[tool]`` in order, then ``answers``."""

    answers: Mapping[str, Answer]
    queued: dict[str, list[Answer]] = field(default_factory=dict)
    calls: list[ToolCallRequested] = field(default_factory=list)
    """Every call made, in order."""

    def __call__(self, request: ToolCallRequested) -> ToolCallCompleted | ToolCallFailed:
        self.calls.append(request)
        waiting = self.queued.get(request.tool) or []
        answer = waiting.pop(0) if waiting else self.answers[request.tool]
        if callable(answer):
            answer = answer(dict(request.arguments))
        if isinstance(answer, Failure):
            return ToolCallFailed(
                call_id=request.call_id,
                tool=request.tool,
                error_code=answer.code,
                message=answer.message,
                retryable=answer.retryable,
                attempts=1,
            )
        return ToolCallCompleted(
            call_id=request.call_id, tool=request.tool, result=answer, duration_ms=1
        )

    def made(self, tool: str) -> list[ToolCallRequested]:
        """The calls made to ``tool``."""
        return [c for c in self.calls if c.tool == tool]


class GraphRun:
    """One run of ``definition``'s graph on an in-memory checkpointer."""

    def __init__(
        self,
        definition: WorkflowDefinition,
        *,
        tools: ScriptedTools,
        gates: GatePolicy | None = None,
        models: Reasoning | None = None,
    ) -> None:
        self.workflow_id = uuid.uuid4()
        self.definition = definition
        self.graph = definition.graph_builder()(
            checkpointer=InMemorySaver(),
            tools=tools,
            models=models or Reasoning(),
            gates=gates or GatePolicy.load(),
        )
        self._config: Any = {"configurable": {"thread_id": str(self.workflow_id)}}

    async def start(
        self, text: str, *, confidence: float = 0.9, tenant: str = "acme", **fields: JsonValue
    ) -> WorkflowState:
        """Run from a routed request until the end or a review; the state then."""
        initial: WorkflowState = {
            "format": FORMAT_VERSION,
            "workflow": self.definition.name,
            "tenant": tenant,
            "text": text,
            "fields": fields,
            "metadata": {},
            "confidence": confidence,
            "needs_human": False,
            "tool_results": {},
            "steps": 0,
            "history": [],
        }
        await self.graph.ainvoke(initial, self._config)
        return await self.values()

    async def values(self) -> WorkflowState:
        """The run's state now."""
        snapshot = await self.graph.aget_state(self._config)
        values: WorkflowState = snapshot.values
        return values

    async def review(self) -> ReviewRequested | None:
        """The review the run waits for, if it waits for one."""
        snapshot = await self.graph.aget_state(self._config)
        for pending in snapshot.interrupts:
            pause = pause_of(
                pending.value, workflow_id=self.workflow_id, workflow=self.definition.name
            )
            if isinstance(pause, ReviewRequested):
                return pause
        return None

    async def decide(
        self, decision: ReviewDecision, *, reviewer: str = "rita", **details: Any
    ) -> WorkflowState:
        """Answer the pending review as hitl would; the state once the run stops again."""
        review = await self.review()
        if review is None:
            raise LookupError("the run waits for no review")
        decided = ReviewDecided(
            review_id=review.review_id, decision=decision, reviewer=reviewer, **details
        )
        await self.graph.ainvoke(Command(resume=decided.model_dump(mode="json")), self._config)
        return await self.values()

    async def history(self) -> list[tuple[str, str]]:
        """``(step, event)`` of every history entry."""
        return [(h["step"], h["event"]) for h in (await self.values()).get("history", [])]
