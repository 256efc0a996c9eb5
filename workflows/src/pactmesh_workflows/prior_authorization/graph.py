"""prior-authorization's graph: validate → check_submission (the payer's contract) →
search_policy (retrieval) → cross_reference → review_gaps (gate) → submit."""

from __future__ import annotations

import json
import re
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from pactmesh_contracts.actions.prior_authorization import PriorAuthorizationRequest
from pactmesh_contracts.tools.payer import (
    PAYER_SEARCH_POLICIES,
    PAYER_SUBMIT_PRIOR_AUTHORIZATION,
    CoveragePolicy,
    PolicySearchArgs,
    SubmitPriorAuthorizationArgs,
)
from pydantic import JsonValue, ValidationError

from pactmesh_workflows.gates import GatePolicy
from pactmesh_workflows.prior_authorization import (
    POLICY_GAPS,
    PriorAuthorizationInput,
    PriorAuthorizationOutput,
)
from pactmesh_workflows.reasoning import Reasoning
from pactmesh_workflows.state import WorkflowState, entry
from pactmesh_workflows.steps import (
    ToolCaller,
    add_gated_action,
    add_tool_or_fail,
    inputs,
    proposed_as,
    start_graph,
    tool_result,
    unless_ended,
)

_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")
_UNITS = re.compile(r"\b(\d{1,3})\s+units?\b", re.I)
_PLACE = re.compile(r"\b(?:place of service|POS)\s*[:#]?\s*(\d{2})\b", re.I)
_EXPEDITED = re.compile(r"\b(?:expedited|urgent)\b", re.I)
_JUSTIFICATION = re.compile(
    r"\b(?:clinical justification|justification|clinical notes?|medical necessity)\s*[:\-]\s*(.+)",
    re.I | re.S,
)


def draft(text: str, found: PriorAuthorizationInput) -> dict[str, JsonValue]:
    """The submission a request describes: routing's identifiers, and from the text the
    service date, units, place of service, urgency and clinical justification (the
    whole request when it marks none). What the request does not state is left out."""
    justification = _JUSTIFICATION.search(text)
    fields: dict[str, JsonValue] = {
        "member_id": found.member_id,
        "provider_npi": found.provider_npi,
        "procedure_code": found.procedure_code,
        "diagnosis_codes": list(found.diagnosis_codes),
        "service_date": _first(_DATE, text),
        "units": int(units) if (units := _first(_UNITS, text)) else 1,
        "place_of_service": _first(_PLACE, text),
        "urgency": "expedited" if _EXPEDITED.search(text) else "standard",
        "clinical_justification": (justification.group(1) if justification else text).strip(),
    }
    return {name: value for name, value in fields.items() if value is not None}


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None


async def _check_submission(state: WorkflowState) -> WorkflowState:
    """Every field the payer's submission contract needs, checked before anything is
    built or sent: a request missing one fails here, naming it."""
    submission = draft(state["text"], inputs(state, PriorAuthorizationInput))
    try:
        checked = PriorAuthorizationRequest.model_validate_json(json.dumps(submission))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        reason = f"the payer's submission contract is not met: {problems}"[:4000]
        return {
            "outcome": "failed",
            "error": reason,
            "output": {},
            "history": [entry("check_submission", "incomplete", reason)],
        }
    return {
        "proposed_action": checked.model_dump(mode="json"),
        "history": [entry("check_submission", "complete", checked.procedure_code)],
    }


def _search_arguments(state: WorkflowState) -> PolicySearchArgs:
    request = proposed_as(state, PriorAuthorizationRequest)
    return PolicySearchArgs(
        procedure_code=request.procedure_code,
        diagnosis_codes=request.diagnosis_codes,
        query=request.clinical_justification,
        limit=3,
    )


def cross_reference(
    request: PriorAuthorizationRequest, policies: list[CoveragePolicy]
) -> tuple[CoveragePolicy | None, list[str]]:
    """The policy governing the procedure, and what the request does not show of it: no
    covered diagnosis, or a criterion none of whose evidence the justification mentions."""
    policy = next((p for p in policies if request.procedure_code in p.procedure_codes), None)
    if policy is None:
        return None, [f"no coverage policy of the payer governs {request.procedure_code}"]
    gaps = []
    covered = [d for d in request.diagnosis_codes if d.startswith(tuple(policy.covered_diagnoses))]
    if not covered:
        listed = ", ".join(request.diagnosis_codes)
        gaps.append(f"diagnosis {listed} is not one {policy.policy_id} covers")
    justification = request.clinical_justification.lower()
    for criterion in policy.criteria:
        if not any(term.lower() in justification for term in criterion.evidence):
            gaps.append(f"{criterion.id}: {criterion.description} is not documented")
    return policy, gaps


async def _cross_reference(state: WorkflowState) -> WorkflowState:
    request = proposed_as(state, PriorAuthorizationRequest)
    found = tool_result(state, "search_policy", PAYER_SEARCH_POLICIES).policies
    policy, gaps = cross_reference(request, found)
    policy_id = policy.policy_id if policy else None
    detail = f"{policy_id or 'no policy'}: {len(gaps)} gap(s)"
    return {
        "output": {"policy_id": policy_id, "gaps": gaps},
        "history": [entry("cross_reference", "checked", detail)],
    }


def _gaps(state: WorkflowState) -> dict[str, Any]:
    """What the gate reads besides the submission: how many gaps, and which."""
    gaps = state.get("output", {}).get("gaps")
    return {"gap_count": None if gaps is None else len(gaps), "gaps": "; ".join(gaps or [])}


def _submit_arguments(state: WorkflowState) -> SubmitPriorAuthorizationArgs:
    request = proposed_as(state, PriorAuthorizationRequest)
    return SubmitPriorAuthorizationArgs(
        member_id=request.member_id,
        provider_npi=request.provider_npi,
        procedure_code=request.procedure_code,
        diagnosis_codes=request.diagnosis_codes,
        service_date=request.service_date,
        units=request.units,
        place_of_service=request.place_of_service,
        urgency=request.urgency,
        clinical_justification=request.clinical_justification,
    )


async def _finish(state: WorkflowState) -> WorkflowState:
    request = proposed_as(state, PriorAuthorizationRequest)
    received = tool_result(state, "submit", PAYER_SUBMIT_PRIOR_AUTHORIZATION)
    checked = state.get("output", {})
    output = PriorAuthorizationOutput(
        authorization_id=received.authorization_id,
        status=received.status,
        decision_due=received.decision_due.isoformat(),
        member_id=request.member_id,
        procedure_code=request.procedure_code,
        policy_id=checked.get("policy_id"),
        gaps=checked.get("gaps", []),
        approval=dict(state.get("approval") or {}),
    )
    return {"outcome": "succeeded", "output": output.model_dump(), "error": None}


def build_graph(
    *,
    checkpointer: BaseCheckpointSaver[Any] | None,
    tools: ToolCaller,
    models: Reasoning,
    gates: GatePolicy,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """The prior-authorization graph, compiled on ``checkpointer``."""
    graph = start_graph(PriorAuthorizationInput, first="check_submission")
    graph.add_node("check_submission", _check_submission)
    unless_ended(graph, "check_submission", "search_policy")
    add_tool_or_fail(
        graph,
        "search_policy",
        PAYER_SEARCH_POLICIES,
        _search_arguments,
        tools=tools,
        on_success="cross_reference",
    )
    graph.add_node("cross_reference", _cross_reference)
    graph.add_edge("cross_reference", POLICY_GAPS.step)
    add_gated_action(
        graph,
        gate=gates.bind(POLICY_GAPS),
        facts=_gaps,
        step="submit",
        contract=PAYER_SUBMIT_PRIOR_AUTHORIZATION,
        arguments=_submit_arguments,
        tools=tools,
        finish=_finish,
    )
    return graph.compile(checkpointer=checkpointer)
