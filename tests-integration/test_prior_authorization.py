"""prior-authorization on the real broker, with real processes and the sandbox payer:
submitted at once when the payer's policy supports the request, after a utilization
reviewer's approval when the policy check finds gaps, never twice, and never when a
field the payer needs is missing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pactmesh_harness.mesh import Mesh
from pactmesh_harness.workflow_client import (
    clear_faults,
    decide,
    entries_for,
    fault,
    finished,
    history_events,
    pending_review,
    submit,
    wait_status,
)

SCOPES = ("workflow:prior-authorization",)
"""What a requester needs to start prior authorization (routing picks it from the text)."""
REQUEST = (
    "Prior authorization request for member XJH482913057: lumbar spine MRI, CPT 72148, "
    "diagnosis M54.16, ordering provider NPI 1234567893, date of service 2031-03-02, "
    "place of service 22. Clinical justification: {justification}"
)
DOCUMENTED = (
    "radicular pain for 8 weeks despite six weeks of physical therapy; progressive "
    "weakness of the left foot."
)
THIN = "low back pain radiating to the leg for 3 weeks, no better with rest."
"""Documents neither criterion of the payer's lumbar MRI policy (PA-IMG-001)."""


@pytest.fixture(autouse=True)
def _no_faults(mesh: Mesh) -> Iterator[None]:
    clear_faults(mesh)
    yield
    clear_faults(mesh)


def test_a_request_the_payers_policy_supports_is_submitted_without_review(mesh: Mesh) -> None:
    rid = submit(mesh, REQUEST.format(justification=DOCUMENTED), scopes=SCOPES)

    values = finished(mesh, rid)

    assert values["workflow"] == "prior-authorization"
    assert values["outcome"] == "succeeded", values.get("error")
    output = values["output"]
    assert (output["policy_id"], output["gaps"]) == ("PA-IMG-001", [])
    assert output["approval"] == {"decision": "not_required"}
    assert output["status"] == "pended"
    [submitted] = entries_for(mesh, rid)
    assert (submitted["kind"], submitted["idempotency_key"]) == (
        "prior_authorization",
        f"{rid}:submit",
    )
    assert submitted["id"] == output["authorization_id"]
    assert submitted["body"]["provider_npi"] == "1234567893"
    assert submitted["body"]["diagnosis_codes"] == ["M54.16"]
    assert ("review_gaps", "gate_passed") in history_events(values)


def test_gaps_wait_for_a_utilization_reviewer_then_the_request_is_submitted(
    mesh: Mesh,
) -> None:
    rid = submit(mesh, REQUEST.format(justification=THIN), scopes=SCOPES)
    wait_status(mesh, rid, "waiting_for_review")
    review = pending_review(mesh, rid)

    assert review["rule"] == "prior-authorization.policy_gaps"
    assert review["required_role"] == "utilization-reviewer"
    assert review["priority"] == "high"
    assert "conservative-therapy" in review["summary"]
    assert "deficit-or-red-flag" in review["summary"]
    assert entries_for(mesh, rid) == [], "nothing reaches the payer before the review"
    assert decide(mesh, review["review_id"], "approve", roles=["support-agent"]).status_code == 403
    approved = decide(
        mesh,
        review["review_id"],
        "approve",
        roles=["utilization-reviewer"],
        comment="imaging justified by the exam notes",
    )
    assert approved.status_code == 200, approved.text

    values = finished(mesh, rid)
    assert values["outcome"] == "succeeded", values.get("error")
    assert values["output"]["approval"]["reviewer"] == "alice@example.com"
    assert len(values["output"]["gaps"]) == 2
    [submitted] = entries_for(mesh, rid)
    assert submitted["idempotency_key"] == f"{rid}:submit"


def test_a_rejected_request_never_reaches_the_payer(mesh: Mesh) -> None:
    rid = submit(mesh, REQUEST.format(justification=THIN), scopes=SCOPES)
    review = pending_review(mesh, rid)
    rejected = decide(
        mesh,
        review["review_id"],
        "reject",
        roles=["utilization-reviewer"],
        comment="document the conservative therapy first",
    )
    assert rejected.status_code == 200, rejected.text

    values = finished(mesh, rid)
    assert values["outcome"] == "rejected"
    assert "document the conservative therapy first" in values["error"]
    assert entries_for(mesh, rid) == []


def test_the_payer_failing_after_taking_the_request_is_retried_into_one_submission(
    mesh: Mesh,
) -> None:
    fault(mesh, "payer", fail_after_commit_next=1)
    rid = submit(mesh, REQUEST.format(justification=DOCUMENTED), scopes=SCOPES)

    values = finished(mesh, rid)

    assert values["outcome"] == "succeeded", values.get("error")
    [submitted] = entries_for(mesh, rid)
    assert submitted["id"] == values["output"]["authorization_id"], "the retry replayed it"


def test_a_request_missing_a_field_the_payer_needs_is_never_sent(mesh: Mesh) -> None:
    text = REQUEST.format(justification=DOCUMENTED).replace("place of service 22. ", "")
    rid = submit(mesh, text, scopes=SCOPES)

    values = finished(mesh, rid)

    assert values["outcome"] == "failed"
    assert "place_of_service: Field required" in values["error"]
    assert entries_for(mesh, rid) == []
    assert not any(step == "search_policy" for step, _ in history_events(values))
