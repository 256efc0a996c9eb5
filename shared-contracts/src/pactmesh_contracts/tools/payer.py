"""The payer (the member's health plan): coverage policies, retrieved for a procedure,
and prior-authorization submissions (a side effect)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from pactmesh_contracts.actions.prior_authorization import (
    DiagnosisCode,
    MemberId,
    Npi,
    PlaceOfService,
    ProcedureCode,
)
from pactmesh_contracts.sensitivity import SENSITIVE_FIELD
from pactmesh_contracts.tools import Endpoint, ToolArguments, ToolContract, ToolOutput


class PolicySearchArgs(ToolArguments):
    """What to find the payer's coverage policies for."""

    procedure_code: ProcedureCode
    diagnosis_codes: list[DiagnosisCode] = Field(default_factory=list, max_length=12)
    query: Annotated[str, StringConstraints(min_length=1, max_length=4000)] = Field(
        serialization_alias="q"
    )
    """The clinical justification: policies are ranked by the terms they share with it."""
    limit: int = Field(3, ge=1, le=10)


class PolicyCriterion(ToolOutput):
    """One requirement of a coverage policy."""

    id: str
    description: str
    evidence: list[str]
    """Terms any one of which, in the clinical justification, documents the criterion."""


class CoveragePolicy(ToolOutput):
    """A coverage policy of the payer, as retrieved for a request."""

    policy_id: str
    title: str
    procedure_codes: list[str]
    """The procedures it governs."""
    covered_diagnoses: list[str]
    """ICD-10 codes or code prefixes (``M51.``) for which the procedure may be covered."""
    criteria: list[PolicyCriterion]
    """What the clinical documentation must show, every one of them."""
    score: float
    """How well it matches the request (procedure first, then shared terms), 0 to 1."""


class PolicySearchResult(ToolOutput):
    """The best matching policies first."""

    policies: list[CoveragePolicy]


class SubmitPriorAuthorizationArgs(ToolArguments):
    """The submission, as the payer's intake takes it."""

    member_id: Annotated[MemberId, Field(json_schema_extra=SENSITIVE_FIELD)]
    provider_npi: Npi
    procedure_code: ProcedureCode
    diagnosis_codes: Annotated[list[DiagnosisCode], Field(min_length=1, max_length=12)]
    service_date: date
    units: int = Field(ge=1, le=999)
    place_of_service: PlaceOfService
    urgency: Literal["standard", "expedited"]
    clinical_justification: Annotated[
        str,
        StringConstraints(min_length=20, max_length=4000),
        Field(json_schema_extra=SENSITIVE_FIELD),
    ]


class PriorAuthorizationReceived(ToolOutput):
    """The payer's acknowledgement: its reference and where the request stands."""

    authorization_id: str
    status: Literal["pended", "approved"]
    """``pended`` for the payer's clinical review; ``approved`` when it needs none."""
    decision_due: date
    """When the payer will have decided, at the latest."""


PAYER_SEARCH_POLICIES = ToolContract(
    "payer.search_policies",
    "Retrieve the payer's coverage policies for a procedure, ranked for a justification.",
    PolicySearchArgs,
    PolicySearchResult,
    Endpoint("payer", "GET", "/payer/policies/search"),
)
PAYER_SUBMIT_PRIOR_AUTHORIZATION = ToolContract(
    "payer.submit_prior_authorization",
    "Submit a prior-authorization request to the payer (once per idempotency key).",
    SubmitPriorAuthorizationArgs,
    PriorAuthorizationReceived,
    Endpoint("payer", "POST", "/payer/prior-authorizations"),
    side_effecting=True,
)
