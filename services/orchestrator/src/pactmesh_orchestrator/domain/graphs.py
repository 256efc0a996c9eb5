"""Building blocks for workflow graphs: tool steps, approval gates, endings."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt
from pactmesh_contracts.actions import validate_action
from pydantic import ValidationError

from pactmesh_orchestrator.domain.policy import Gate, GatePolicy
from pactmesh_orchestrator.domain.state import (
    ReviewAnswer,
    ReviewRequest,
    ToolAnswer,
    ToolRequest,
    WorkflowState,
    entry,
)


class Node(Protocol):
    """A graph node: reads the state, returns the keys it changes."""

    def __call__(self, state: WorkflowState) -> Awaitable[dict[str, Any]]: ...


def tool_step(
    step: str,
    tool: str,
    arguments: Callable[[WorkflowState], dict[str, Any]],
    *,
    result_key: str | None = None,
    idempotency_scope: str | None = None,
) -> Node:
    """A node that pauses the graph until ``tool`` answers.

    The graph holds no task while it waits: ``interrupt()`` checkpoints the state and
    returns control; the answer arrives later as an event, on any instance, and
    ``Command(resume=...)`` re-enters this node with it. The answer is stored under
    ``result_key`` (default: the step), so a retry step can overwrite its original.
    """
    key = result_key or step

    async def node(state: WorkflowState) -> dict[str, Any]:
        request = ToolRequest(
            step=step,
            tool=tool,
            arguments=arguments(state),
            idempotency_scope=idempotency_scope or key,
        )
        answer = ToolAnswer.model_validate(interrupt(request.model_dump()))
        event = (
            entry(step, "tool_completed", tool)
            if answer.ok
            else entry(step, "tool_failed", f"{tool}: {answer.error_code} {answer.message}"[:500])
        )
        return {
            "tool_results": {**state.get("tool_results", {}), key: answer.model_dump()},
            "steps": state.get("steps", 0) + 1,
            "history": [event],
        }

    node.__name__ = step
    return node


def tool_ok(state: WorkflowState, key: str) -> bool:
    """Whether the tool call stored under ``key`` succeeded."""
    return bool(state.get("tool_results", {}).get(key, {}).get("ok"))


def tool_result(state: WorkflowState, key: str) -> dict[str, Any]:
    """The result of the successful tool call stored under ``key``."""
    answer = state["tool_results"][key]
    if not answer["ok"]:
        raise LookupError(f"{key} did not succeed")
    return dict(answer["result"])


def retryable_failure(state: WorkflowState, key: str) -> bool:
    """Whether the call under ``key`` failed in a way that may succeed if repeated."""
    answer = state.get("tool_results", {}).get(key, {})
    return not answer.get("ok") and bool(answer.get("retryable"))


def _ask(
    gate: Gate, *, step: str, action: dict[str, Any], action_type: str, attempt: int
) -> ReviewAnswer:
    role = gate.approver_role if attempt == 0 else (gate.escalate_to or gate.approver_role)
    expires = datetime.now(UTC) + timedelta(seconds=gate.timeout_s)
    request = ReviewRequest(
        step=step,
        attempt=attempt,
        rule=gate.rule,
        summary=gate.summary if attempt == 0 else f"ESCALATED: {gate.summary}",
        action_type=action_type,
        proposed_action=action,
        required_role=role,
        expires_at=expires.isoformat(),
        priority=gate.priority.value,
    )
    return ReviewAnswer.model_validate(interrupt(request.model_dump()))


def approval_gate(*, workflow: str, step: str, policy: GatePolicy, action_type: str) -> Node:
    """A node that lets ``proposed_action`` through, or pauses it for a reviewer.

    The policy decides whether the gate fires. Approve passes the action on; edit
    passes the edited action on once it validates against the action's contract;
    reject ends the workflow; expiry rejects or escalates once, as the gate says.
    """

    async def node(state: WorkflowState) -> dict[str, Any]:
        action = dict(state.get("proposed_action") or {})
        gate = policy.firing(workflow=workflow, step=step, action=action)
        if gate is None:
            return {
                "approval": {"decision": "not_required"},
                "history": [entry(step, "gate_passed")],
            }
        history = [entry(step, "review_requested", gate.rule, role=gate.approver_role)]
        answer = _ask(gate, step=step, action=action, action_type=action_type, attempt=0)
        if answer.decision == "expire" and gate.on_expiry == "escalate":
            history.append(entry(step, "review_expired", f"escalated to {gate.escalate_to}"))
            answer = _ask(gate, step=step, action=action, action_type=action_type, attempt=1)
        return _decided(step, gate, action, action_type, answer, history)

    node.__name__ = step
    return node


def _decided(
    step: str,
    gate: Gate,
    action: dict[str, Any],
    action_type: str,
    answer: ReviewAnswer,
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    approval = {
        "decision": answer.decision,
        "rule": gate.rule,
        "reviewer": answer.reviewer,
        "comment": answer.comment,
    }
    if answer.decision == "approve":
        return {
            "approval": approval,
            "history": [*history, entry(step, "approved", answer.reviewer)],
        }
    if answer.decision == "edit" and answer.edited_action is not None:
        try:
            edited = validate_action(action_type, answer.edited_action).model_dump(mode="json")
        except (ValidationError, LookupError) as exc:
            reason = f"edited action is invalid: {exc}"[:1000]
            return _rejected(step, approval, history, reason)
        return {
            "approval": approval,
            "proposed_action": edited,
            "history": [
                *history,
                entry(step, "edited", answer.reviewer, before=action, after=edited),
            ],
        }
    reason = "review expired" if answer.decision == "expire" else f"rejected by {answer.reviewer}"
    if answer.comment:
        reason += f": {answer.comment}"
    return _rejected(step, approval, history, reason)


def _rejected(
    step: str, approval: dict[str, Any], history: list[dict[str, Any]], reason: str
) -> dict[str, Any]:
    return {
        "approval": {**approval, "decision": "rejected"},
        "outcome": "rejected",
        "error": reason,
        "output": {},
        "history": [*history, entry(step, "rejected", reason)],
    }


def approved(state: WorkflowState) -> bool:
    """Whether the last gate let the action through."""
    return (state.get("approval") or {}).get("decision") in ("approve", "edit", "not_required")


def fail(reason: Callable[[WorkflowState], str]) -> Node:
    """A node ending the workflow as failed, with ``reason`` recorded."""

    async def node(state: WorkflowState) -> dict[str, Any]:
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
            f"{k}: {results[k].get('error_code')} {results[k].get('message', '')}".strip()
            for k in keys
            if k in results and not results[k].get("ok")
        ]
        return "; ".join(failures) or "tool failed"

    return describe


def add_tool_with_retry(
    graph: Any,
    step: str,
    tool: str,
    arguments: Callable[[WorkflowState], dict[str, Any]],
    *,
    on_success: str,
    on_failure: str,
    retry_arguments: Callable[[WorkflowState], dict[str, Any]] | None = None,
) -> None:
    """Add ``step`` and its declared recovery path ``<step>_retry`` to ``graph``.

    A retryable failure (timeout, 5xx after the tools service's own retries, open
    circuit) is tried once more, with ``retry_arguments`` when given (other parameters);
    the retry reuses the step's idempotency scope, so a side effect that did happen the
    first time is not repeated. Any other failure, or a failed retry, goes to
    ``on_failure``. Both outcomes land under the same result key.
    """
    retry = f"{step}_retry"
    graph.add_node(step, tool_step(step, tool, arguments))
    graph.add_node(
        retry,
        tool_step(
            retry, tool, retry_arguments or arguments, result_key=step, idempotency_scope=step
        ),
    )

    def after_first(state: WorkflowState) -> str:
        if tool_ok(state, step):
            return on_success
        return retry if retryable_failure(state, step) else on_failure

    graph.add_conditional_edges(step, after_first, [on_success, retry, on_failure])
    graph.add_conditional_edges(
        retry, lambda s: on_success if tool_ok(s, step) else on_failure, [on_success, on_failure]
    )


def validate_input(
    model: type[Any], *, on_valid: str, on_invalid: str
) -> tuple[Node, Callable[[WorkflowState], str]]:
    """A first node checking routing's fields against the workflow's input contract,
    and the router that follows it. The validated input replaces ``fields``."""

    async def node(state: WorkflowState) -> dict[str, Any]:
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
        return on_invalid if state.get("outcome") == "failed" else on_valid

    return node, route


def proposed(state: WorkflowState) -> dict[str, Any]:
    """The proposed action, which every step after the proposal may rely on."""
    action = state.get("proposed_action")
    if action is None:
        raise LookupError("no action has been proposed yet")
    return dict(action)


def start_graph(input_model: type[Any], *, first: str) -> StateGraph[WorkflowState]:
    """A workflow graph whose first node checks routing's fields against ``input_model``;
    valid input goes on to ``first``, invalid input ends the run as failed."""
    graph: StateGraph[WorkflowState] = StateGraph(WorkflowState)
    check, after_check = validate_input(input_model, on_valid=first, on_invalid=END)
    graph.add_node("validate_input", check)
    graph.add_edge(START, "validate_input")
    graph.add_conditional_edges("validate_input", after_check, [first, END])
    return graph


def unless_ended(graph: StateGraph[WorkflowState], step: str, next_step: str) -> None:
    """After ``step``, go to ``next_step`` unless ``step`` decided the outcome."""
    graph.add_conditional_edges(
        step, lambda s: END if s.get("outcome") else next_step, [next_step, END]
    )


def add_tool_or_fail(
    graph: StateGraph[WorkflowState],
    step: str,
    tool: str,
    arguments: Callable[[WorkflowState], dict[str, Any]],
    *,
    on_success: str,
    retry_arguments: Callable[[WorkflowState], dict[str, Any]] | None = None,
) -> None:
    """``add_tool_with_retry`` whose failure ends the run as failed, naming the error."""
    failed = f"{step}_failed"
    add_tool_with_retry(
        graph,
        step,
        tool,
        arguments,
        on_success=on_success,
        on_failure=failed,
        retry_arguments=retry_arguments,
    )
    graph.add_node(failed, fail(tool_failure_reason(step)))
    graph.add_edge(failed, END)


def add_gated_action(
    graph: StateGraph[WorkflowState],
    *,
    workflow: str,
    policy: GatePolicy,
    gate: str,
    action_type: str,
    step: str,
    tool: str,
    arguments: Callable[[WorkflowState], dict[str, Any]],
    finish: Node,
) -> None:
    """``gate`` (the approval gate on the proposed action) → ``step`` (the side effect,
    with its retry path) → ``finish``; a rejected or failed action ends the run."""
    graph.add_node(
        gate, approval_gate(workflow=workflow, step=gate, policy=policy, action_type=action_type)
    )
    graph.add_conditional_edges(gate, lambda s: step if approved(s) else END, [step, END])
    add_tool_or_fail(graph, step, tool, arguments, on_success="finish")
    graph.add_node("finish", finish)
    graph.add_edge("finish", END)


def action_fields(*keys: str) -> Callable[[WorkflowState], dict[str, Any]]:
    """Tool arguments taken from the proposed action's ``keys``."""

    def arguments(state: WorkflowState) -> dict[str, Any]:
        action = proposed(state)
        return {k: action[k] for k in keys}

    return arguments
