"""prior-authorization: the healthcare case. Check that a prior-authorization request
has every field the payer's submission contract needs, retrieve the payer's coverage
policy for the procedure, cross-reference the clinical justification and diagnoses with
it, have a utilization reviewer look at any gap, then submit to the payer, once."""

from __future__ import annotations

import re
from typing import Any

from pactmesh_contracts.actions.prior_authorization import PriorAuthorizationRequest
from pactmesh_contracts.tools.payer import PAYER_SEARCH_POLICIES, PAYER_SUBMIT_PRIOR_AUTHORIZATION
from pydantic import BaseModel, ConfigDict, Field

from pactmesh_workflows.definition import Routing, WorkflowDefinition
from pactmesh_workflows.fields import IdentifierField, IdentifierListField
from pactmesh_workflows.gates import Condition, GateSpec, Threshold

NAME = "prior-authorization"


class PriorAuthorizationInput(BaseModel):
    """What routing extracted; every field the payer needs is checked by the submission
    contract itself, so a request missing one fails naming it."""

    model_config = ConfigDict(extra="ignore")

    member_id: str | None = None
    provider_npi: str | None = None
    procedure_code: str | None = None
    diagnosis_codes: list[str] = Field(default_factory=list)


class PriorAuthorizationOutput(BaseModel):
    """The payer's acknowledgement, and what the policy check found."""

    model_config = ConfigDict(extra="forbid")

    authorization_id: str
    status: str
    """The payer's: ``pended`` for its clinical review, or ``approved``."""
    decision_due: str
    member_id: str
    procedure_code: str
    policy_id: str | None
    """The payer's coverage policy the request was checked against."""
    gaps: list[str]
    """What the policy asks that the request does not show (a reviewer saw them)."""
    approval: dict[str, Any]


MEMBER_ID = IdentifierField(
    "member_id",
    "The member's id on their insurance card, for example XJH482913057.",
    "member ids as written",
    re.compile(r"\bmember(?:\s+id)?\s*(?:number|no\.?)?\s*[:#]?\s*([A-Z]{1,3}\d{6,12})\b", re.I),
    scoped=True,
    pattern=re.compile(r"^[A-Z]{1,3}\d{6,12}$"),
    example="XJH482913057",
    upper=True,
    stands_for="the member",
)
PROVIDER_NPI = IdentifierField(
    "provider_npi",
    "The ordering provider's ten-digit NPI, for example 1234567893.",
    "the provider's NPI",
    re.compile(r"\bNPI\s*(?:number|no\.?)?\s*(?:is\s+)?[:#]?\s*(\d{10})\b", re.I),
    scoped=True,
    pattern=re.compile(r"^\d{10}$"),
    example="1234567893",
    stands_for="the provider",
)
PROCEDURE_CODE = IdentifierField(
    "procedure_code",
    "The CPT or HCPCS code of the procedure, for example 72148 or E0601.",
    "CPT or HCPCS codes as written",
    re.compile(r"\b(?:CPT|HCPCS)(?:\s+code)?\s*[:#]?\s*(\d{5}|[A-V]\d{4})\b", re.I),
    scoped=True,
    pattern=re.compile(r"^(\d{5}|[A-V]\d{4})$"),
    example="72148",
    upper=True,
    stands_for="the procedure",
)
DIAGNOSIS_CODES = IdentifierListField(
    "diagnosis_codes",
    "The ICD-10 diagnosis codes, primary first, for example M54.16.",
    "ICD-10 codes as written",
    re.compile(r"\b([A-TV-Z]\d[0-9A-Z]\.[0-9A-Z]{1,4})\b"),
    scoped=True,
    pattern=re.compile(r"^[A-TV-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?$"),
    example="M54.16",
    stands_for="the diagnosis",
)

POLICY_GAPS = GateSpec(
    rule="prior-authorization.policy_gaps",
    step="review_gaps",
    summary=(
        "Prior authorization with gaps against the payer's policy: {reason}. Approve to "
        "submit it as it is, edit it, or reject it."
    ),
    action=PriorAuthorizationRequest,
    when=(
        Condition(
            field="gap_count",
            op="gt",
            value=Threshold(threshold="max_gaps"),
            says="{gaps}",
        ),
    ),
)
"""A request the payer's policy does not plainly support goes to a utilization reviewer."""

WORKFLOW = WorkflowDefinition(
    name=NAME,
    description="Check a prior authorization against the payer's policy, review gaps, submit.",
    package=__name__,
    input_model=PriorAuthorizationInput,
    output_model=PriorAuthorizationOutput,
    actions=(PriorAuthorizationRequest,),
    tools=(PAYER_SEARCH_POLICIES, PAYER_SUBMIT_PRIOR_AUTHORIZATION),
    routing=Routing(
        description=(
            "prior authorization of a medical procedure, imaging, device or drug with the "
            "patient's health plan (CPT or HCPCS codes, ICD-10 diagnoses, the provider's NPI)"
        ),
        examples=(
            "Prior authorization for member XJH482913057: lumbar MRI, CPT 72148, "
            "diagnosis M54.16, after six weeks of physical therapy",
            "Knee MRI CPT 73721 needs prior authorization, meniscus tear M23.2, NPI 1245319599",
            "Submit a prior auth for a CPAP machine, HCPCS E0601, sleep study shows AHI 22",
            "Request precertification for adalimumab J0135, rheumatoid arthritis M05.79, "
            "methotrexate failed",
            "The insurer needs authorization before the patient's MRI of the lumbar spine",
            "Medical necessity letter and clinical notes for the lumbar spine MRI prior "
            "authorization",
            "Precertification for CPT 72148, herniated disc M51.26, radicular leg pain and "
            "numbness",
            "Does the payer's coverage policy for spinal imaging require prior authorization "
            "for CPT 72148?",
            "Prior authorization for a sleep study, CPT 95810, snoring and daytime "
            "sleepiness G47.33",
            "Infusion of infliximab J1745 needs payer prior authorization, Crohn's disease K50.90",
        ),
        keywords=(
            (
                r"\bprior auth(?:orization)?s?\b|\bpre-?auth(?:orization)?\b"
                r"|\bpre-?certification\b|\bpre-?cert\b",
                3.0,
            ),
            (r"\bCPT\b|\bHCPCS\b|\bICD-?10\b|\bNPI\b", 2.0),
            (
                r"\bpayer'?s?\b|\binsurer\b|\binsurance\b|\bhealth plan\b|\bmedical necessity\b"
                r"|\bcoverage polic(?:y|ies)\b",
                1.5,
            ),
            (r"\bpatient'?s?\b|\bMRI\b|\bdiagnos[ie]s\b|\bclinical\b|\bprocedure\b", 1.0),
        ),
        fields=(MEMBER_ID, PROVIDER_NPI, PROCEDURE_CODE, DIAGNOSIS_CODES),
    ),
    gates=(POLICY_GAPS,),
)
