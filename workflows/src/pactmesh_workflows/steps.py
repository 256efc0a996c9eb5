"""Building blocks for workflow graphs: tool steps, approval gates, endings.

Imported only by the workflows' ``graph.py`` modules (it needs LangGraph). Tools are
called through their contracts, so the arguments a graph sends and the results it reads
are typed; whether a call pauses the graph until the tools service answers (the mesh's
way, ``pause_for_tool``) or is answered on the spot (a test's fake) is the ``ToolCaller``
the graph is built with.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from langgraph.config import get_config
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pactmesh_contracts.events import (
    ReviewDecided,
    ReviewDecision,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
)
from pactmesh_contracts.tools import ToolArguments, ToolContract, ToolOutput
from pydantic import BaseModel, JsonValue, ValidationError

from pactmesh_workflows.gates import Gate
from pactmesh_workflows.state import (
    PAUSED_AT,
    Approval,
    HistoryEntry,
    ToolOutcome,
    WorkflowState,
    call_id_for,
    entry,
    expiry,
    outcome_of,
    review_answer_of,
    review_id_for,
    tool_answer_of,
)

A = TypeVar("A", bound=ToolArguments)
R = TypeVar("R", bound=ToolOutput)
M = TypeVar("M", bound=BaseModel)

Arguments = Callable[[WorkflowState], A]
"""Builds a call's typed arguments from the state."""
Graph = StateGraph[WorkflowState]


_PROPAGATOR = TraceContextTextMapPropagator()
DEFAULT_TOOL_TIMEOUT_S = 30.0
"""A call's deadline unless the run's config says otherwise (``tool_timeout_s``)."""


class Node(Protocol):
    """A graph node: reads the state, returns the keys it changes."""

    def __call__(self, state: WorkflowState) -> Awaitable[WorkflowState]: ...


class ToolCaller(Protocol):
    """Carries out one tool call for a graph step and returns its answer."""

    def __call__(self, request: ToolCallRequested) -> ToolCallCompleted | ToolCallFailed: ...


def pause_for_tool(request: ToolCallRequested) -> ToolCallCompleted | ToolCallFailed:
    """The mesh's way: checkpoint the graph and wait for the tools service's answer.

    The graph holds no task while it waits: ``interrupt()`` checkpoints the state with
    the request (the engine publishes it) and returns control; the answer arrives later
    as an event, on any instance, and ``Command(resume=...)`` re-enters the step with it.
    """
    return tool_answer_of(interrupt(request.model_dump(mode="json")), request)


def run_id() -> uuid.UUID:
    """The running workflow's id: its thread in the checkpointer."""
    return uuid.UUID(str(get_config()["configurable"]["thread_id"]))


def _tool_request(
    state: WorkflowState,
    step: str,
    contract: ToolContract[Any, Any],
    args: ToolArguments,
    scope: str,
) -> ToolCallRequested:
    workflow_id = run_id()
    timeout = get_config()["configurable"].get("tool_timeout_s", DEFAULT_TOOL_TIMEOUT_S)
    return ToolCallRequested(
        call_id=call_id_for(workflow_id, step, state.get("pause_key")),
        tool=contract.name,
        arguments=args.model_dump(mode="json"),
        idempotency_key=f"{workflow_id}:{scope}",
        timeout_s=timeout,
        workflow=state.get("workflow"),
    )


def tool_step(
    step: str,
    contract: ToolContract[A, Any],
    arguments: Arguments[A],
    *,
    tools: ToolCaller,
    result_key: str | None = None,
    idempotency_scope: str | None = None,
) -> Node:
    """A node calling ``contract``'s tool with typed ``arguments``; the answer is stored
    under ``result_key`` (default: the step), so a retry step can overwrite its original."""
    key = result_key or step

    async def node(state: WorkflowState) -> WorkflowState:
        try:
            typed = arguments(state)
        except ValidationError as exc:
            # As the tools service would answer them: refused before anything is sent.
            answer = ToolOutcome(
                ok=False,
                result={},
                error_code=ToolErrorCode.INVALID_ARGUMENTS.value,
                message=str(exc),
                retryable=False,
            )
        else:
            request = _tool_request(state, step, contract, typed, idempotency_scope or key)
            answer = outcome_of(tools(request))
        event = (
            entry(step, "tool_completed", contract.name)
            if answer["ok"]
            else entry(
                step,
                "tool_failed",
                f"{contract.name}: {answer['error_code']} {answer['message']}"[:500],
            )
        )
        return {
            "tool_results": {**state.get("tool_results", {}), key: answer},
            "steps": state.get("steps", 0) + 1,
            "history": [event],
        }

    node.__name__ = step
    return node


def tool_ok(state: WorkflowState, key: str) -> bool:
    """Whether the tool call stored under ``key`` succeeded."""
    answer = state.get("tool_results", {}).get(key)
    return answer is not None and answer["ok"]


def tool_result(state: WorkflowState, key: str, contract: ToolContract[Any, R]) -> R:
    """The typed result of the successful call stored under ``key``."""
    answer = state["tool_results"][key]
    if not answer["ok"]:
        raise LookupError(f"{key} did not succeed")
    return contract.result.model_validate(answer["result"])


def retryable_failure(state: WorkflowState, key: str) -> bool:
    """Whether the call under ``key`` failed in a way that may succeed if repeated."""
    answer = state.get("tool_results", {}).get(key)
    return answer is not None and not answer["ok"] and answer["retryable"]


def branch(
    graph: Graph, source: str, path: Callable[[WorkflowState], str], ends: list[str]
) -> None:
    """After ``source``, go where ``path`` says (one of ``ends``), deciding on the event
    loop.

    ``graph.add_conditional_edges`` with a plain function would have LangGraph run it in
    a thread pool whenever the graph is streamed asynchronously (``coerce_to_runnable``
    wraps it in ``run_in_executor``): a thread hop and back for a decision that reads a
    key of the state, five per support-triage run. An async path is awaited in place.
    """

    async def decide(state: WorkflowState) -> str:
        return path(state)

    # The branch's name as LangGraph gave it before: the function's, "condition" for a
    # lambda (a graph's structure, and so its checkpoints, stay as they were).
    name = getattr(path, "__name__", "<lambda>")
    decide.__name__ = "condition" if name == "<lambda>" else name
    graph.add_conditional_edges(source, decide, ends)


def add_tool_with_retry(
    graph: Graph,
    step: str,
    contract: ToolContract[A, Any],
    arguments: Arguments[A],
    *,
    tools: ToolCaller,
    on_success: str,
    on_failure: str,
    retry_arguments: Arguments[A] | None = None,
) -> None:
    """Add ``step`` and its declared recovery path ``<step>_retry`` to ``graph``.

    A retryable failure (timeout, 5xx after the tools service's own retries, open
    circuit) is tried once more, with ``retry_arguments`` when given (other parameters);
    the retry reuses the step's idempotency scope, so a side effect that did happen the
    first time is not repeated. Any other failure, or a failed retry, goes to
    ``on_failure``. Both outcomes land under the same result key.
    """
    retry = f"{step}_retry"
    graph.add_node(step, tool_step(step, contract, arguments, tools=tools))
    graph.add_node(
        retry,
        tool_step(
            retry,
            contract,
            retry_arguments or arguments,
            tools=tools,
            result_key=step,
            idempotency_scope=step,
        ),
    )

    def after_first(state: WorkflowState) -> str:
        if tool_ok(state, step):
            return on_success
        return retry if retryable_failure(state, step) else on_failure

    branch(graph, step, after_first, [on_success, retry, on_failure])
    branch(
        graph,
        retry,
        lambda s: on_success if tool_ok(s, step) else on_failure,
        [on_success, on_failure],
    )


def add_tool_or_fail(
    graph: Graph,
    step: str,
    contract: ToolContract[A, Any],
    arguments: Arguments[A],
    *,
    tools: ToolCaller,
    on_success: str,
    retry_arguments: Arguments[A] | None = None,
) -> None:
    """``add_tool_with_retry`` whose failure ends the run as failed, naming the error."""
    failed = f"{step}_failed"
    add_tool_with_retry(
        graph,
        step,
        contract,
        arguments,
        tools=tools,
        on_success=on_success,
        on_failure=failed,
        retry_arguments=retry_arguments,
    )
    graph.add_node(failed, fail(tool_failure_reason(step)))
    graph.add_edge(failed, END)


# -- approval gates -------------------------------------------------------------------

Facts = Callable[[WorkflowState], Mapping[str, Any]]
"""Values a gate reads besides the proposed action (an order's total, from the CRM)."""


def _ask(
    state: WorkflowState, gate: Gate, *, action: dict[str, JsonValue], reason: str, attempt: int
) -> ReviewDecided:
    summary = gate.spec.summary.format(reason=reason)
    request = ReviewRequested(
        review_id=review_id_for(run_id(), gate.spec.step, attempt, state.get("pause_key")),
        workflow=state.get("workflow", ""),
        rule=gate.rule,
        summary=summary if attempt == 0 else f"ESCALATED: {summary}",
        action_type=gate.spec.action_type,
        proposed_action=action,
        required_role=gate.role(attempt),
        expires_at=expiry(gate.settings.timeout_s),
        attempt=attempt,
        priority=gate.settings.priority,
        separation_of_duties=gate.settings.separation_of_duties,
    )
    pause: dict[str, Any] = request.model_dump(mode="json")
    if (parent := _traceparent()) is not None:
        pause[PAUSED_AT] = parent
    return review_answer_of(interrupt(pause), request)


def _traceparent() -> str | None:
    """The current span's W3C ``traceparent`` (the engine's ``invoke_workflow`` span)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def gate_step(gate: Gate, *, facts: Facts | None = None) -> Node:
    """The node evaluating ``gate`` on the proposed action, asking a reviewer when it fires.

    ``approval`` gates: approve passes the action on; an edit passes once it validates
    against the action's contract; reject ends the run; expiry rejects or escalates
    once, as the policy says. ``policy`` gates: the action breaks a rule, so approving
    it as it is ends the run unexecuted; only a valid edit the gate no longer stops
    (and that keeps the gate's fixed fields) goes on, approved by that edit.
    """
    step = gate.spec.step
    policy = gate.spec.kind == "policy"

    async def node(state: WorkflowState) -> WorkflowState:
        action = proposed(state)
        values = {**action, **(facts(state) if facts else {})}
        reason = gate.verdict(values)
        if reason is None:
            if policy:
                return {"history": [entry(step, "within_policy")]}
            return {
                "approval": {"decision": "not_required"},
                "history": [entry(step, "gate_passed")],
            }
        fired = entry(
            step,
            *(("out_of_policy", reason) if policy else ("review_requested", gate.rule)),
            role=gate.role(0),
        )
        history = [fired]
        answer = _ask(state, gate, action=action, reason=reason, attempt=0)
        if answer.decision is ReviewDecision.EXPIRE and gate.settings.on_expiry == "escalate":
            escalated = f"escalated to {gate.settings.escalate_to}"
            history.append(entry(step, "review_expired", escalated))
            answer = _ask(state, gate, action=action, reason=reason, attempt=1)
        if policy:
            return _policy_decided(gate, action, values, reason, answer, history)
        return _decided(gate, action, answer, history)

    node.__name__ = step
    return node


def _decided(
    gate: Gate,
    action: dict[str, JsonValue],
    answer: ReviewDecided,
    history: list[HistoryEntry],
) -> WorkflowState:
    step = gate.spec.step
    reviewer, decision = answer.reviewer, answer.decision
    if decision is ReviewDecision.APPROVE:
        approval = Approval(
            decision="approve", rule=gate.rule, reviewer=reviewer, comment=answer.comment
        )
        return {"approval": approval, "history": [*history, entry(step, "approved", reviewer)]}
    if decision is ReviewDecision.EDIT and answer.edited_action is not None:
        try:
            edited = gate.spec.validate_edit(answer.edited_action).model_dump(mode="json")
        except ValidationError as exc:
            return _rejected(gate, answer, history, f"edited action is invalid: {exc}"[:1000])
        approval = Approval(
            decision="edit", rule=gate.rule, reviewer=reviewer, comment=answer.comment
        )
        return {
            "approval": approval,
            "proposed_action": edited,
            "history": [*history, entry(step, "edited", reviewer, before=action, after=edited)],
        }
    reason = "review expired" if decision is ReviewDecision.EXPIRE else f"rejected by {reviewer}"
    if answer.comment:
        reason += f": {answer.comment}"
    return _rejected(gate, answer, history, reason)


def _policy_decided(
    gate: Gate,
    action: dict[str, JsonValue],
    values: dict[str, Any],
    reason: str,
    answer: ReviewDecided,
    history: list[HistoryEntry],
) -> WorkflowState:
    """Only an edit that the gate lets through is carried out."""
    step = gate.spec.step
    still: str | None = reason
    if answer.decision is ReviewDecision.EDIT and answer.edited_action:
        try:
            edited = gate.spec.validate_edit(answer.edited_action).model_dump(mode="json")
        except ValidationError as exc:
            return _refused(gate, history, f"the edit is invalid ({exc.error_count()} error(s))")
        changed = [
            what
            for field, what in gate.spec.fixed.items()
            if edited.get(field) != action.get(field)
        ]
        still = f"the edit changed {changed[0]}" if changed else gate.verdict({**values, **edited})
        if still is None:
            return {
                "proposed_action": edited,
                "approval": Approval(decision="edit", rule=gate.rule, reviewer=answer.reviewer),
                "history": [*history, entry(step, "edited", answer.reviewer)],
            }
    return _refused(gate, history, f"{still} ({answer.decision.value} by {answer.reviewer})")


def _refused(gate: Gate, history: list[HistoryEntry], reason: str) -> WorkflowState:
    text = gate.spec.refusal.format(reason=reason)
    return {
        "outcome": "rejected",
        "error": text,
        "output": {},
        "history": [*history, entry(gate.spec.step, "rejected", text)],
    }


def _rejected(
    gate: Gate, answer: ReviewDecided, history: list[HistoryEntry], reason: str
) -> WorkflowState:
    approval = Approval(
        decision="rejected", rule=gate.rule, reviewer=answer.reviewer, comment=answer.comment
    )
    return {
        "approval": approval,
        "outcome": "rejected",
        "error": reason,
        "output": {},
        "history": [*history, entry(gate.spec.step, "rejected", reason)],
    }


def approved(state: WorkflowState) -> bool:
    """Whether the last gate let the action through."""
    approval = state.get("approval")
    return approval is not None and approval["decision"] in ("approve", "edit", "not_required")


def add_gated_action(
    graph: Graph,
    *,
    gate: Gate,
    step: str,
    contract: ToolContract[A, Any],
    arguments: Arguments[A],
    tools: ToolCaller,
    finish: Node,
    facts: Facts | None = None,
) -> None:
    """The gate's step (the approval gate on the proposed action, and on ``facts``) →
    ``step`` (the side effect, with its retry path) → ``finish``; a rejected or failed
    action ends the run."""
    graph.add_node(gate.spec.step, gate_step(gate, facts=facts))
    branch(graph, gate.spec.step, lambda s: step if approved(s) else END, [step, END])
    add_tool_or_fail(graph, step, contract, arguments, tools=tools, on_success="finish")
    graph.add_node("finish", finish)
    graph.add_edge("finish", END)


# -- beginnings and endings ------------------------------------------------------------


def fail(reason: Callable[[WorkflowState], str]) -> Node:
    """A node ending the workflow as failed, with ``reason`` recorded."""

    async def node(state: WorkflowState) -> WorkflowState:
        text = reason(state)
        return {
            "outcome": "failed",
            "error": text,
            "output": {},
            "history": [entry("failed", "failed", text)],
        }

    return node


def tool_failure_reason(*keys: str) -> Callable[[WorkflowState], str]:
    """Describe the failed tool calls stored under ``keys``."""

    def describe(state: WorkflowState) -> str:
        results = state.get("tool_results", {})
        failures = [
            f"{k}: {results[k]['error_code']} {results[k]['message']}".strip()
            for k in keys
            if k in results and not results[k]["ok"]
        ]
        return "; ".join(failures) or "tool failed"

    return describe


def validate_input(
    model: type[Any], *, on_valid: str | Callable[[WorkflowState], str], on_invalid: str
) -> tuple[Node, Callable[[WorkflowState], str]]:
    """A first node checking routing's fields against the workflow's input contract,
    and the router that follows it (to ``on_valid``, or where it says for the validated
    state). The validated input replaces ``fields``."""

    async def node(state: WorkflowState) -> WorkflowState:
        try:
            checked = model.model_validate(state.get("fields", {}))
        except ValidationError as exc:
            errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            reason = f"input does not satisfy {model.__name__}: {errors}"
            return {
                "outcome": "failed",
                "error": reason,
                "output": {},
                "history": [entry("validate_input", "invalid_input", reason)],
            }
        return {
            "fields": checked.model_dump(mode="json"),
            "history": [entry("validate_input", "valid_input")],
        }

    def route(state: WorkflowState) -> str:
        if state.get("outcome") == "failed":
            return on_invalid
        return on_valid if isinstance(on_valid, str) else on_valid(state)

    return node, route


def proposed(state: WorkflowState) -> dict[str, JsonValue]:
    """The proposed action, which every step after the proposal may rely on."""
    action = state.get("proposed_action")
    if action is None:
        raise LookupError("no action has been proposed yet")
    return dict(action)


def inputs(state: WorkflowState, model: type[M]) -> M:
    """Routing's fields as the workflow's input contract (checked at the start)."""
    return model.model_validate(state.get("fields", {}))


def proposed_as(state: WorkflowState, model: type[M]) -> M:
    """The proposed action, typed by its contract (validated as JSON, where it came from)."""
    return model.model_validate_json(json.dumps(proposed(state)))


def start_graph(
    input_model: type[Any],
    *,
    first: str | Callable[[WorkflowState], str],
    firsts: Sequence[str] = (),
) -> Graph:
    """A workflow graph whose first node checks routing's fields against ``input_model``;
    valid input goes on to ``first`` (a step, or a choice among ``firsts`` made on the
    validated state), invalid input ends the run as failed."""
    graph: Graph = StateGraph(WorkflowState)
    check, after_check = validate_input(input_model, on_valid=first, on_invalid=END)
    graph.add_node("validate_input", check)
    graph.add_edge(START, "validate_input")
    branch(
        graph,
        "validate_input",
        after_check,
        [first, END] if isinstance(first, str) else [*firsts, END],
    )
    return graph


def unless_ended(graph: Graph, step: str, next_step: str) -> None:
    """After ``step``, go to ``next_step`` unless ``step`` decided the outcome."""
    branch(graph, step, lambda s: END if s.get("outcome") else next_step, [next_step, END])
