"""prior-authorization: its submission contract, and its graph with scripted tools (the
payer's policy retrieval and intake) and reviewers."""

from __future__ import annotations

from typing import Any

import pytest
from pactmesh_contracts.actions.prior_authorization import (
    PriorAuthorizationRequest,
    npi_check_digit_holds,
)
from pactmesh_contracts.events import ReviewDecision, ToolErrorCode
from pactmesh_workflows.prior_authorization import NAME
from pactmesh_workflows.prior_authorization.graph import draft
from pactmesh_workflows.registry import registry
from pactmesh_workflows.testing import Failure, GraphRun, ScriptedTools
from pydantic import ValidationError

TEXT = (
    "Prior authorization request for member XJH482913057: lumbar spine MRI, CPT 72148, "
    "diagnosis M54.16, ordering provider NPI 1234567893, date of service 2031-03-02, "
    "place of service 22. Clinical justification: radicular pain for 8 weeks despite six "
    "weeks of physical therapy; progressive weakness of the left foot."
)
FIELDS: dict[str, Any] = {
    "member_id": "XJH482913057",
    "provider_npi": "1234567893",
    "procedure_code": "72148",
    "diagnosis_codes": ["M54.16"],
}
THIN = TEXT.replace(
    "radicular pain for 8 weeks despite six weeks of physical therapy; progressive "
    "weakness of the left foot.",
    "low back pain radiating to the leg for 3 weeks, no better with rest.",
)
"""The same request, with a justification that documents neither of the policy's criteria."""
LUMBAR_MRI = {
    "policy_id": "PA-IMG-001",
    "title": "Magnetic resonance imaging of the lumbar spine",
    "procedure_codes": ["72148", "72149"],
    "covered_diagnoses": ["M54.1", "M51."],
    "criteria": [
        {
            "id": "conservative-therapy",
            "description": "six weeks of failed conservative therapy",
            "evidence": ["physical therapy", "six weeks"],
        },
        {
            "id": "deficit-or-red-flag",
            "description": "a neurological deficit or a red flag",
            "evidence": ["weakness", "numbness"],
        },
    ],
    "score": 0.9,
}
RECEIVED = {"authorization_id": "PA-7", "status": "pended", "decision_due": "2031-02-20"}


def _tools(**answers: Any) -> ScriptedTools:
    return ScriptedTools(
        {
            "payer.search_policies": {"policies": [LUMBAR_MRI]},
            "payer.submit_prior_authorization": RECEIVED,
            **answers,
        }
    )


def _run(tools: ScriptedTools) -> GraphRun:
    return GraphRun(registry()[NAME], tools=tools)


# -- the submission contract -----------------------------------------------------------


def _request(**change: Any) -> PriorAuthorizationRequest:
    return registry().validate_action(  # type: ignore[return-value]
        "prior_authorization.v1",
        {
            **FIELDS,
            "service_date": "2031-03-02",
            "place_of_service": "22",
            "clinical_justification": "Radicular pain despite physical therapy.",
            **change,
        },
    )


def test_the_registry_knows_the_submission_contract() -> None:
    assert registry().actions["prior_authorization.v1"] is PriorAuthorizationRequest
    assert _request().units == 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"provider_npi": "1234567890"}, "check digit"),
        ({"provider_npi": "12345"}, "provider_npi"),
        ({"member_id": "xjh482913057"}, "member_id"),
        ({"procedure_code": "MRI"}, "procedure_code"),
        ({"diagnosis_codes": []}, "diagnosis_codes"),
        ({"diagnosis_codes": ["M54.16", "M54.16"]}, "listed twice"),
        ({"diagnosis_codes": ["5416"]}, "diagnosis_codes.0"),
        ({"service_date": "02/03/2031"}, "service_date"),
        ({"place_of_service": "hospital"}, "place_of_service"),
        ({"clinical_justification": "MRI please"}, "clinical_justification"),
        ({"urgency": "asap"}, "urgency"),
        ({"approved": True}, "Extra inputs are not permitted"),
    ],
)
def test_the_payers_contract_is_strict(change: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        _request(**change)


def test_npi_check_digits() -> None:
    assert npi_check_digit_holds("1234567893")
    assert npi_check_digit_holds("1245319599")
    assert not npi_check_digit_holds("1234567890")


def test_a_request_is_read_into_the_submission_it_describes() -> None:
    found = registry()[NAME].input_model.model_validate(FIELDS)
    assert draft(TEXT + " Expedited, 2 units.", found) == {  # type: ignore[arg-type]
        **FIELDS,
        "service_date": "2031-03-02",
        "units": 2,
        "place_of_service": "22",
        "urgency": "expedited",
        "clinical_justification": (
            "radicular pain for 8 weeks despite six weeks of physical therapy; progressive "
            "weakness of the left foot. Expedited, 2 units."
        ),
    }


# -- the graph ----------------------------------------------------------------------------


async def test_a_request_the_policy_supports_is_submitted_without_review() -> None:
    tools = _tools()
    run = _run(tools)

    state = await run.start(TEXT, **FIELDS)

    assert state["outcome"] == "succeeded", state.get("error")
    assert [c.tool for c in tools.calls] == [
        "payer.search_policies",
        "payer.submit_prior_authorization",
    ]
    [search] = tools.made("payer.search_policies")
    assert search.arguments["procedure_code"] == "72148"
    assert search.arguments["diagnosis_codes"] == ["M54.16"]
    [submitted] = tools.made("payer.submit_prior_authorization")
    assert submitted.idempotency_key == f"{run.workflow_id}:submit"
    assert submitted.arguments["provider_npi"] == "1234567893"
    assert submitted.arguments["service_date"] == "2031-03-02"
    assert state["output"] == {
        "authorization_id": "PA-7",
        "status": "pended",
        "decision_due": "2031-02-20",
        "member_id": "XJH482913057",
        "procedure_code": "72148",
        "policy_id": "PA-IMG-001",
        "gaps": [],
        "approval": {"decision": "not_required"},
    }
    assert ("review_gaps", "gate_passed") in await run.history()


async def test_gaps_against_the_policy_wait_for_a_utilization_reviewer() -> None:
    tools = _tools()
    run = _run(tools)

    await run.start(THIN, **FIELDS)

    review = await run.review()
    assert review is not None
    assert review.rule == "prior-authorization.policy_gaps"
    assert review.required_role == "utilization-reviewer"
    assert review.action_type == "prior_authorization.v1"
    assert "conservative-therapy: six weeks of failed conservative therapy" in review.summary
    assert "deficit-or-red-flag" in review.summary
    assert tools.made("payer.submit_prior_authorization") == []


async def test_an_approved_request_with_gaps_is_submitted_once() -> None:
    tools = _tools()
    run = _run(tools)
    await run.start(THIN, **FIELDS)

    state = await run.decide(ReviewDecision.APPROVE, reviewer="dr.ruiz", comment="seen")

    assert state["outcome"] == "succeeded", state.get("error")
    assert len(tools.made("payer.submit_prior_authorization")) == 1
    assert len(state["output"]["gaps"]) == 2
    assert state["output"]["approval"]["reviewer"] == "dr.ruiz"


async def test_a_rejected_request_is_never_submitted() -> None:
    tools = _tools()
    run = _run(tools)
    await run.start(THIN, **FIELDS)

    state = await run.decide(ReviewDecision.REJECT, comment="document the therapy first")

    assert state["outcome"] == "rejected"
    assert state.get("error") == "rejected by rita: document the therapy first"
    assert tools.made("payer.submit_prior_authorization") == []


async def test_an_edited_request_is_submitted_as_edited_and_checked_again() -> None:
    tools = _tools()
    run = _run(tools)
    await run.start(THIN, **FIELDS)
    review = await run.review()
    assert review is not None

    fixed = "Radicular pain for 8 weeks, six weeks of physical therapy failed, foot weakness."
    state = await run.decide(
        ReviewDecision.EDIT,
        edited_action={**review.proposed_action, "clinical_justification": fixed},
    )
    assert state["outcome"] == "succeeded", state.get("error")
    [submitted] = tools.made("payer.submit_prior_authorization")
    assert submitted.arguments["clinical_justification"] == fixed

    broken = _run(_tools())
    await broken.start(THIN, **FIELDS)
    refused = await broken.decide(
        ReviewDecision.EDIT,
        edited_action={**review.proposed_action, "provider_npi": "1234567890"},
    )
    assert refused["outcome"] == "rejected"
    assert "edited action is invalid" in (refused.get("error") or "")


@pytest.mark.parametrize(
    ("text", "fields", "named"),
    [
        (TEXT.replace("place of service 22. ", ""), FIELDS, "place_of_service: Field required"),
        (TEXT, {**FIELDS, "provider_npi": None}, "provider_npi: Field required"),
        (TEXT, {**FIELDS, "provider_npi": "1234567890"}, "check digit"),
        (TEXT.replace("2031-03-02", "soon"), FIELDS, "service_date: Field required"),
        (TEXT, {**FIELDS, "diagnosis_codes": []}, "diagnosis_codes: List should have at least"),
    ],
)
async def test_a_request_missing_what_the_payer_needs_fails_before_anything_is_sent(
    text: str, fields: dict[str, Any], named: str
) -> None:
    tools = _tools()
    run = _run(tools)

    state = await run.start(text, **{k: v for k, v in fields.items() if v is not None})

    assert state["outcome"] == "failed"
    error = state.get("error") or ""
    assert error.startswith("the payer's submission contract is not met: ")
    assert named in error
    assert tools.calls == []


async def test_a_procedure_no_policy_governs_is_a_gap() -> None:
    tools = _tools(**{"payer.search_policies": {"policies": []}})
    run = _run(tools)
    await run.start(TEXT, **FIELDS)

    review = await run.review()
    assert review is not None
    assert "no coverage policy of the payer governs 72148" in review.summary


async def test_a_diagnosis_the_policy_does_not_cover_is_a_gap() -> None:
    run = _run(_tools())
    await run.start(TEXT.replace("M54.16", "M54.50"), **{**FIELDS, "diagnosis_codes": ["M54.50"]})

    review = await run.review()
    assert review is not None
    assert "diagnosis M54.50 is not one PA-IMG-001 covers" in review.summary


async def test_an_unanswered_review_escalates_to_the_medical_director() -> None:
    run = _run(_tools())
    await run.start(THIN, **FIELDS)

    await run.decide(ReviewDecision.EXPIRE, reviewer="policy:expiry")

    review = await run.review()
    assert review is not None
    assert (review.attempt, review.required_role) == (1, "medical-director")


async def test_the_payer_failing_once_is_retried_with_the_same_idempotency_key() -> None:
    tools = _tools()
    tools.queued["payer.submit_prior_authorization"] = [Failure(message="payer answered 503")]
    run = _run(tools)

    state = await run.start(TEXT, **FIELDS)

    assert state["outcome"] == "succeeded", state.get("error")
    first, retry = tools.made("payer.submit_prior_authorization")
    assert first.idempotency_key == retry.idempotency_key == f"{run.workflow_id}:submit"
    assert first.call_id != retry.call_id


async def test_retrieval_failing_for_good_fails_the_run_naming_it() -> None:
    failure = Failure(ToolErrorCode.INVALID_ARGUMENTS, "bad procedure", retryable=False)
    tools = _tools(**{"payer.search_policies": failure})
    run = _run(tools)

    state = await run.start(TEXT, **FIELDS)

    assert state["outcome"] == "failed"
    assert state.get("error") == "search_policy: invalid_arguments bad procedure"
    assert tools.made("payer.submit_prior_authorization") == []


# -- routing ------------------------------------------------------------------------------


def test_routing_extracts_what_the_workflow_needs() -> None:
    from pactmesh_routing.domain.classifier import classify, extract_fields

    assert extract_fields(TEXT, workflow=NAME) == FIELDS
    decision = classify(text=TEXT, known_workflows=registry().names, fallback="support-triage")
    assert decision.workflow == NAME
    # another workflow's request gets none of prior authorization's fields
    assert "member_id" not in extract_fields("Refund order 4411, member 12", workflow="refund")
