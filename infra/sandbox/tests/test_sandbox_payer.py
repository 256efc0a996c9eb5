"""The payer: coverage policies retrieved for a procedure, and prior-authorization
intake once per idempotency key, with the same fault switches as every backend."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import httpx
import pytest
from pactmesh_sandbox.testing import SandboxAdmin

REQUEST: dict[str, Any] = {
    "member_id": "XJH482913057",
    "provider_npi": "1234567893",
    "procedure_code": "72148",
    "diagnosis_codes": ["M54.16"],
    "service_date": "2031-03-02",
    "units": 1,
    "place_of_service": "22",
    "urgency": "standard",
    "clinical_justification": "Radicular pain for 8 weeks despite physical therapy.",
}
PATH = "/payer/prior-authorizations"


def _submit(client: httpx.AsyncClient, body: dict[str, Any], key: str = "wf-1:submit") -> Any:
    return client.post(PATH, json=body, headers={"Idempotency-Key": key})


async def _search(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/payer/policies/search", params=params)
    assert response.status_code == 200, response.text
    policies: list[dict[str, Any]] = response.json()["policies"]
    return policies


async def test_the_policy_governing_the_procedure_comes_first(client: httpx.AsyncClient) -> None:
    found = await _search(
        client,
        procedure_code="72148",
        diagnosis_codes=["M54.16", "M51.26"],
        q="lumbar spine pain after six weeks of physical therapy, weakness",
    )
    assert found[0]["policy_id"] == "PA-IMG-001"
    assert found[0]["score"] > 0.5
    assert [c["id"] for c in found[0]["criteria"]] == [
        "conservative-therapy",
        "deficit-or-red-flag",
    ]
    assert all(a["score"] >= b["score"] for a, b in pairwise(found))


async def test_retrieval_honours_the_limit_and_may_find_nothing(client: httpx.AsyncClient) -> None:
    assert len(await _search(client, procedure_code="72148", q="knee injury", limit=1)) == 1
    assert await _search(client, procedure_code="99213", q="xylophone quantum") == []
    refused = await client.get("/payer/policies/search", params={"procedure_code": "MRI", "q": "x"})
    assert refused.status_code == 422


async def test_a_submission_is_pended_once_per_key(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    first = await _submit(client, REQUEST)
    again = await _submit(client, REQUEST)

    assert (first.status_code, again.status_code) == (201, 201), first.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["status"] == "pended"
    [entry] = await admin.ledger(kind="prior_authorization")
    assert (entry["id"], entry["idempotency_key"]) == (
        first.json()["authorization_id"],
        "wf-1:submit",
    )
    assert entry["body"]["procedure_code"] == "72148"
    other = await _submit(client, {**REQUEST, "units": 2})
    assert other.status_code == 409


async def test_a_procedure_no_policy_governs_is_approved_at_once(
    client: httpx.AsyncClient,
) -> None:
    response = await _submit(client, {**REQUEST, "procedure_code": "97110"}, "wf-2:submit")
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "approved"


@pytest.mark.parametrize(
    ("change", "status", "detail"),
    [
        ({"provider_npi": "1234567890"}, 422, "NPI check digit mismatch"),
        ({"diagnosis_codes": []}, 422, "at least 1 item"),
        ({"service_date": "next week"}, 422, "date"),
        ({"member_id": "ABC123123123"}, 404, "member ABC123123123 not found"),
        ({"member_id": "TRM555000111"}, 422, "coverage is terminated"),
        ({"units": "1"}, 422, "integer"),
        ({"approved": True}, 422, "Extra inputs are not permitted"),
    ],
)
async def test_the_intake_refuses_what_its_schema_or_roster_refuse(
    client: httpx.AsyncClient,
    admin: SandboxAdmin,
    change: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    response = await _submit(client, {**REQUEST, **change})
    assert response.status_code == status
    assert detail in response.text
    assert await admin.ledger(kind="prior_authorization") == []


async def test_faults_apply_to_the_payer_like_any_backend(
    client: httpx.AsyncClient, admin: SandboxAdmin
) -> None:
    await admin.set_faults("payer", fail_next=1, fail_after_commit_next=1)
    refused = await _submit(client, REQUEST)
    assert refused.status_code == 503
    assert await admin.ledger(kind="prior_authorization") == []

    committed = await _submit(client, REQUEST)
    assert committed.status_code == 503, "served, then answered 503 anyway"
    retried = await _submit(client, REQUEST)
    assert retried.status_code == 201
    [entry] = await admin.ledger(kind="prior_authorization")
    assert entry["id"] == retried.json()["authorization_id"]
    assert "payer" in await admin.faults()
