"""Prior authorization's action: the request submitted to the member's health plan.

Strict as the payer's intake is (an X12 278-like request): every field the payer needs
is present and well formed before anything is sent, so a submission the payer would
bounce is caught in the mesh, where the requester can still fix it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from pactmesh_contracts.actions import Action
from pactmesh_contracts.sensitivity import SENSITIVE_FIELD

MemberId = Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,3}\d{6,12}$")]
"""The member's id on their insurance card, for example ``XJH482913057``."""
Npi = Annotated[str, StringConstraints(pattern=r"^\d{10}$")]
"""A National Provider Identifier: ten digits, the last a Luhn check digit."""
ProcedureCode = Annotated[str, StringConstraints(pattern=r"^(\d{5}|[A-V]\d{4})$")]
"""A CPT code (five digits, ``72148``) or a HCPCS Level II code (``E0601``)."""
DiagnosisCode = Annotated[str, StringConstraints(pattern=r"^[A-TV-Z]\d[0-9A-Z](\.[0-9A-Z]{1,4})?$")]
"""An ICD-10-CM code, for example ``M54.16``."""
PlaceOfService = Annotated[str, StringConstraints(pattern=r"^\d{2}$")]
"""The CMS place-of-service code: ``11`` office, ``22`` outpatient hospital..."""


def npi_check_digit_holds(npi: str) -> bool:
    """Whether ``npi``'s last digit is its Luhn check digit (over ``80840`` + the first
    nine digits, as CMS defines it)."""
    digits = [int(d) for d in f"80840{npi[:9]}"]
    for position in range(len(digits) - 1, -1, -2):
        doubled = digits[position] * 2
        digits[position] = doubled - 9 if doubled > 9 else doubled
    return (10 - sum(digits) % 10) % 10 == int(npi[9])


class PriorAuthorizationRequest(Action):
    """Ask the member's health plan to authorize a procedure before it is performed."""

    action_type: Literal["prior_authorization.v1"] = "prior_authorization.v1"
    member_id: Annotated[MemberId, Field(json_schema_extra=SENSITIVE_FIELD)]
    provider_npi: Npi
    """The ordering provider."""
    procedure_code: ProcedureCode
    diagnosis_codes: Annotated[list[DiagnosisCode], Field(min_length=1, max_length=12)]
    """Primary diagnosis first."""
    service_date: date
    """When the procedure is planned."""
    units: Annotated[int, Field(ge=1, le=999)] = 1
    place_of_service: PlaceOfService
    urgency: Literal["standard", "expedited"] = "standard"
    """``expedited`` when waiting could seriously jeopardize the member's health."""
    clinical_justification: Annotated[
        str,
        StringConstraints(min_length=20, max_length=4000),
        Field(json_schema_extra=SENSITIVE_FIELD),
    ]
    """Why the procedure is medically necessary, from the clinical documentation."""

    @field_validator("provider_npi")
    @classmethod
    def _npi_check_digit(cls, npi: str) -> str:
        if not npi_check_digit_holds(npi):
            raise ValueError("the NPI's check digit does not match")
        return npi

    @field_validator("diagnosis_codes")
    @classmethod
    def _distinct(cls, codes: list[str]) -> list[str]:
        if len(set(codes)) != len(codes):
            raise ValueError("a diagnosis code is listed twice")
        return codes
