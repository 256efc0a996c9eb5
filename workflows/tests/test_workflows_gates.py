"""The one gate engine: declared conditions against the policy file's thresholds, failing
closed, and a policy file that must set exactly the declared gates."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from pactmesh_contracts.actions.procurement import PurchaseOrderAction
from pactmesh_workflows.gates import (
    Condition,
    Gate,
    GatePolicy,
    GatePolicyError,
    GateSettings,
    GateSpec,
    Ref,
    Threshold,
)
from pactmesh_workflows.procurement import OVER_THRESHOLD
from pactmesh_workflows.refund import OUT_OF_POLICY
from pactmesh_workflows.registry import registry
from pactmesh_workflows.state import WorkflowState
from pactmesh_workflows.steps import gate_step
from pactmesh_workflows.support_triage import HUMAN_TRIAGE
from pydantic import ValidationError

POLICY = GatePolicy.load()


def _settings(**thresholds: Any) -> GateSettings:
    return GateSettings(
        approver_role="lead", timeout_s=60, on_expiry="reject", thresholds=thresholds
    )


def test_a_threshold_comes_from_the_policy_file() -> None:
    gate = POLICY.bind(OVER_THRESHOLD)
    assert gate.verdict({"stated_amount": 10_000.0}) is None
    assert gate.verdict({"stated_amount": 12_000.0}) == (
        "amount 12000 is over the approval threshold 10000"
    )
    stricter = Gate(OVER_THRESHOLD, _settings(max_amount=500))
    assert stricter.verdict({"stated_amount": 600.0}) is not None


def test_any_condition_stops_a_policy_gate_with_its_own_reason() -> None:
    gate = POLICY.bind(OUT_OF_POLICY)
    assert gate.verdict({"amount": 100.0, "order_total": 500.0}) is None
    assert gate.verdict({"amount": 800.0, "order_total": 500.0}) == (
        "amount 800 exceeds the order total 500"
    )
    assert gate.verdict({"amount": 1500.0, "order_total": 5000.0}) == (
        "amount 1500 exceeds the refund limit 1000"
    )
    assert gate.verdict({"amount": 0.0, "order_total": 5000.0}) == "amount 0 is not positive"


def test_all_conditions_must_hold_by_default() -> None:
    spec = GateSpec(
        rule="t.both",
        step="s",
        summary="",
        action=PurchaseOrderAction,
        when=(
            Condition(field="amount", op="gt", value=Threshold(threshold="limit")),
            Condition(field="vendor", op="in", value=["Acme", "Initech"]),
        ),
    )
    gate = Gate(spec, _settings(limit=100))
    assert gate.verdict({"amount": 200, "vendor": "Globex"}) is None
    assert gate.verdict({"amount": 50, "vendor": "Acme"}) is None
    assert gate.verdict({"amount": 200, "vendor": "Acme"}) == (
        "amount 200 gt limit 100; vendor 'Acme' in ['Acme', 'Initech']"
    )


def test_a_gate_without_conditions_always_fires() -> None:
    assert POLICY.bind(HUMAN_TRIAGE).verdict({"question": "?"}) == ""


@pytest.mark.parametrize(
    "values",
    [
        {},  # the field the gate reads is missing
        {"stated_amount": None},
        {"vendor": "Acme", "amount": 500.0},  # an amount the request does not state
    ],
)
def test_a_gate_whose_field_is_missing_fires(values: dict[str, Any]) -> None:
    """Fail closed: an action without the amount a gate compares is reviewed."""
    assert POLICY.bind(OVER_THRESHOLD).verdict(values) == (
        "the amount is neither written in the request nor the total of lines priced in it"
    )


@pytest.mark.parametrize("spec", registry().gates, ids=lambda spec: spec.rule)
def test_every_gate_of_every_workflow_fires_on_any_value_it_reads_missing(spec: GateSpec) -> None:
    """Fail closed, checked for each declared gate: whichever value a condition reads is
    absent (or None), the gate stops the action for a person."""
    gate = POLICY.bind(spec)
    assert gate.verdict({}) is not None
    for name in spec.reads:
        present = {other: 1 for other in spec.reads if other != name}
        assert gate.verdict({**present, name: None}) is not None, name
        assert gate.verdict(present) is not None, name


def test_a_missing_fact_fires_a_policy_gate_too() -> None:
    assert POLICY.bind(OUT_OF_POLICY).verdict({"amount": 10.0}) == "order_total is missing"


def test_a_value_that_cannot_be_compared_fires() -> None:
    assert POLICY.bind(OVER_THRESHOLD).verdict({"stated_amount": "a lot"}) is not None
    spec = GateSpec(
        rule="t.ref",
        step="s",
        summary="",
        action=PurchaseOrderAction,
        when=(Condition(field="amount", op="gt", value=Ref(ref="budget")),),
    )
    assert Gate(spec, _settings()).verdict({"amount": 5, "budget": "n/a"}) is not None


async def test_the_graph_step_pauses_an_action_missing_the_gated_field() -> None:
    graph: StateGraph[WorkflowState] = StateGraph(WorkflowState)
    graph.add_node(OVER_THRESHOLD.step, gate_step(POLICY.bind(OVER_THRESHOLD)))
    graph.add_edge(START, OVER_THRESHOLD.step)
    graph.add_edge(OVER_THRESHOLD.step, END)
    compiled = graph.compile(checkpointer=InMemorySaver())
    config: Any = {"configurable": {"thread_id": str(uuid.uuid4())}}
    action = {"action_type": "purchase_order.v1", "vendor": "Acme", "items": []}

    await compiled.ainvoke(
        {"workflow": "procurement", "proposed_action": action, "history": []}, config
    )

    [pending] = (await compiled.aget_state(config)).interrupts
    assert pending.value["type"] == "review.requested.v1"
    assert pending.value["rule"] == "procurement.amount_over_threshold"
    assert pending.value["summary"] == "Purchase order above the approval threshold"
    assert pending.value["required_role"] == "procurement-manager"


def test_the_packaged_policy_sets_exactly_the_declared_gates() -> None:
    POLICY.check(registry().gates)
    assert set(POLICY.gates) == {g.rule for g in registry().gates}


def test_a_declared_gate_the_file_leaves_out_is_refused() -> None:
    without = GatePolicy(gates={k: v for k, v in POLICY.gates.items() if k != OVER_THRESHOLD.rule})
    with pytest.raises(GatePolicyError, match="sets nothing for gate"):
        without.check(registry().gates)


def test_a_setting_for_no_declared_gate_is_refused() -> None:
    typo = GatePolicy(gates={**POLICY.gates, "procurement.amount_over_treshold": _settings()})
    with pytest.raises(GatePolicyError, match="undeclared gates"):
        typo.check(registry().gates)


def test_a_threshold_the_file_leaves_out_is_refused() -> None:
    with pytest.raises(GatePolicyError, match=r"needs thresholds \['max_amount'\]"):
        GatePolicy(gates={OVER_THRESHOLD.rule: _settings()}).bind(OVER_THRESHOLD)


def test_escalation_needs_a_target() -> None:
    with pytest.raises(ValidationError, match="escalate needs escalate_to"):
        GateSettings(approver_role="a", timeout_s=1, on_expiry="escalate")


def test_the_policy_file_holds_no_logic() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        GatePolicy.model_validate(
            {
                "gates": {
                    OVER_THRESHOLD.rule: {
                        "approver_role": "a",
                        "timeout_s": 1,
                        "on_expiry": "reject",
                        "when": [{"field": "amount", "op": "gt", "value": 1}],
                    }
                }
            }
        )
