"""The payer: a health plan's coverage policies, its members, and its intake of
prior-authorization requests. Small and deterministic, so tests can name results.

Policies are retrieved as a RAG step would retrieve documents: those governing the
requested procedure first, then by the share of the justification's terms they contain.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from pactmesh_sandbox.models import Answer, Request

# -- contracts (the payer's own, as a real intake validates) -------------------------


class Criterion(Answer):
    id: str
    description: str
    evidence: list[str]
    """Terms any one of which, in a justification, documents the criterion."""


class Policy(Answer):
    policy_id: str
    title: str
    procedure_codes: list[str]
    covered_diagnoses: list[str]
    """ICD-10 codes or prefixes (``M51.``) for which the procedure may be covered."""
    criteria: list[Criterion]


class RankedPolicy(Policy):
    score: float
    """0.5 for governing the procedure, plus half the share of the query's terms found."""


class PolicySearchResult(Answer):
    policies: list[RankedPolicy]


class PriorAuthorizationRequest(Request):
    member_id: Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,3}\d{6,12}$")]
    provider_npi: Annotated[str, StringConstraints(pattern=r"^\d{10}$")]
    procedure_code: Annotated[str, StringConstraints(pattern=r"^(\d{5}|[A-V]\d{4})$")]
    diagnosis_codes: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^[A-TV-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?$")]],
        Field(min_length=1, max_length=12),
    ]
    service_date: Annotated[date, Field(strict=False)]
    """An ISO date: FastAPI validates the parsed body as Python, where strict refuses str."""
    units: Annotated[int, Field(ge=1, le=999)]
    place_of_service: Annotated[str, StringConstraints(pattern=r"^\d{2}$")]
    urgency: Literal["standard", "expedited"]
    clinical_justification: Annotated[str, StringConstraints(min_length=20, max_length=4000)]

    @field_validator("provider_npi")
    @classmethod
    def _npi(cls, npi: str) -> str:
        if not npi_valid(npi):
            raise ValueError("NPI check digit mismatch")
        return npi


class PriorAuthorizationReceived(Answer):
    authorization_id: str
    status: Literal["pended", "approved"]
    decision_due: date


# -- data -----------------------------------------------------------------------------

POLICIES: tuple[Policy, ...] = (
    Policy(
        policy_id="PA-IMG-001",
        title="Magnetic resonance imaging of the lumbar spine",
        procedure_codes=["72148", "72149", "72158"],
        covered_diagnoses=["M54.1", "M51.", "M48.0", "G83.4", "C79.5"],
        criteria=[
            Criterion(
                id="conservative-therapy",
                description="at least six weeks of failed conservative therapy",
                evidence=["physical therapy", "conservative therapy", "six weeks", "6 weeks"],
            ),
            Criterion(
                id="deficit-or-red-flag",
                description="a neurological deficit or a red flag (cancer, infection, trauma)",
                evidence=["weakness", "numbness", "foot drop", "neurological deficit", "cancer"],
            ),
        ],
    ),
    Policy(
        policy_id="PA-IMG-014",
        title="Magnetic resonance imaging of the knee",
        procedure_codes=["73721"],
        covered_diagnoses=["M23.2", "S83.", "M25.56"],
        criteria=[
            Criterion(
                id="mechanical-symptoms",
                description="an injury or mechanical symptoms (locking, giving way)",
                evidence=["locking", "giving way", "instability", "injury", "effusion"],
            ),
        ],
    ),
    Policy(
        policy_id="PA-DME-003",
        title="Positive airway pressure devices for obstructive sleep apnea",
        procedure_codes=["E0601"],
        covered_diagnoses=["G47.33"],
        criteria=[
            Criterion(
                id="sleep-study",
                description="a sleep study showing an apnea-hypopnea index of 5 or more",
                evidence=["polysomnography", "sleep study", "ahi"],
            ),
        ],
    ),
    Policy(
        policy_id="PA-RX-020",
        title="Adalimumab for inflammatory conditions",
        procedure_codes=["J0135"],
        covered_diagnoses=["M05.", "M06.", "L40.5", "K50.", "K51."],
        criteria=[
            Criterion(
                id="conventional-therapy",
                description="failure of a conventional DMARD such as methotrexate",
                evidence=["methotrexate", "dmard", "sulfasalazine"],
            ),
            Criterion(
                id="tb-screening",
                description="a negative tuberculosis screening",
                evidence=["tuberculosis", "tb test", "quantiferon"],
            ),
        ],
    ),
)

MEMBERS: dict[str, Literal["active", "terminated"]] = {
    "XJH482913057": "active",
    "ZQA100200300": "active",
    "TRM555000111": "terminated",
}
"""The plan's members and their coverage."""

_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset({"a", "an", "and", "the", "of", "for", "to", "with", "in", "on", "or", "at"})


def _terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def search_policies(*, procedure_code: str, query: str, limit: int) -> list[RankedPolicy]:
    """The policies governing ``procedure_code`` first, then by the share of ``query``'s
    terms their title and criteria contain; those matching neither are left out."""
    terms = _terms(query)
    ranked = []
    for policy in POLICIES:
        text = " ".join([policy.title, *(c.description for c in policy.criteria)])
        share = len(terms & _terms(text)) / max(len(terms), 1)
        governs = procedure_code in policy.procedure_codes
        if governs or share:
            score = round(0.5 * governs + 0.5 * share, 3)
            ranked.append(RankedPolicy(**policy.model_dump(), score=score))
    ranked.sort(key=lambda p: p.score, reverse=True)
    return ranked[:limit]


def npi_valid(npi: str) -> bool:
    """The NPI's Luhn check digit (over ``80840`` + its first nine digits) holds."""
    digits = [int(d) for d in f"80840{npi[:9]}"]
    for position in range(len(digits) - 1, -1, -2):
        digits[position] = sum(divmod(digits[position] * 2, 10))
    return (10 - sum(digits) % 10) % 10 == int(npi[9])


def received(
    request: PriorAuthorizationRequest, authorization_id: str
) -> PriorAuthorizationReceived:
    """The acknowledgement: a procedure a policy governs is pended for clinical review
    (decided within 3 days when expedited, 14 otherwise); any other is approved at once."""
    reviewed = any(request.procedure_code in p.procedure_codes for p in POLICIES)
    days = (3 if request.urgency == "expedited" else 14) if reviewed else 0
    return PriorAuthorizationReceived(
        authorization_id=authorization_id,
        status="pended" if reviewed else "approved",
        decision_due=date.today() + timedelta(days=days),
    )
