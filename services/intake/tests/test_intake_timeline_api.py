"""``GET /v1/requests/{id}/timeline``, ``GET /v1/usage`` and the daily budget at the
door, without Kafka: the stores are opened directly and the publisher is a fake."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pactmesh_contracts.envelope import Principal, new_event
from pactmesh_contracts.events import (
    AuditGateFired,
    AuditModelCalled,
    AuditRequestAccepted,
    Channel,
)
from pactmesh_contracts.usage import Budget, Budgets, Usage
from pactmesh_intake.adapters.audit_store import open_audit_store
from pactmesh_intake.adapters.sqlite_store import open_sqlite_store
from pactmesh_intake.app import create_app
from pactmesh_intake.runtime import Runtime
from pactmesh_intake.settings import Settings
from pactmesh_intake.testing import FakePublisher
from pactmesh_kit.auth.testing import bearer

ALICE = Principal(subject="alice", roles=("requester",))


async def _client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    runtime.publisher = FakePublisher()  # type: ignore[assignment]
    async with (
        open_sqlite_store(settings.data_dir / "intake.sqlite3") as store,
        open_audit_store(data_dir=settings.data_dir, postgres_url=None) as audit,
    ):
        runtime.store, runtime.audit = store, audit
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as http:
            yield http, runtime


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    budgets = Budgets(tenants={"thrifty": Budget(tokens_per_day=100)})
    return Settings(data_dir=tmp_path, budgets=budgets)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    async for pair in _client(settings):
        yield pair


async def _request(runtime: Runtime, *, tenant: str = "acme") -> uuid.UUID:
    """A request by alice whose refund gate asked a support lead."""
    request_id = uuid.uuid4()
    accepted = new_event(
        AuditRequestAccepted(channel=Channel.HTTP, text="Refund order 4411"),
        workflow_id=request_id,
        tenant=tenant,
        principal=ALICE,
    )
    called = accepted.follow(
        AuditModelCalled(
            service="routing",
            role="routing",
            workflow="refund",
            model="pactmesh-offline:default",
            raw_output='{"workflow": "refund"}',
            validation="valid",
            usage=Usage(input_tokens=80, output_tokens=30),
        )
    )
    gate = called.follow(
        AuditGateFired(
            review_id=uuid.uuid4(),
            workflow="refund",
            rule="refund.amount_over_auto_limit",
            summary="over the limit",
            proposed_action={"amount": 450.0},
            required_role="support-lead",
        )
    )
    for event in (accepted, called, gate):
        assert await runtime.require_audit().record(event)
    return request_id


def _get(settings: Settings, tenant: str = "acme", **token: Any) -> dict[str, str]:
    return bearer(settings, tenant=tenant, **token)


async def test_the_requester_auditors_and_the_gates_reviewers_read_the_timeline(
    api: tuple[httpx.AsyncClient, Runtime], settings: Settings
) -> None:
    http, runtime = api
    request_id = await _request(runtime)
    path = f"/v1/requests/{request_id}/timeline"

    answer = await http.get(path, headers=_get(settings, subject="alice"))
    assert answer.status_code == 200, answer.text
    timeline = answer.json()
    assert [e["type"] for e in timeline["entries"]] == [
        "audit.request.accepted.v1",
        "audit.model.called.v1",
        "audit.gate.fired.v1",
    ]
    model = timeline["entries"][1]["detail"]
    assert (model["model"], model["validation"]) == ("pactmesh-offline:default", "valid")
    assert model["raw_output"] == '{"workflow": "refund"}'
    assert timeline["entries"][0]["principal"] == "alice"

    auditor = _get(settings, roles=("auditor",), subject="audrey")
    reviewer = _get(settings, roles=("support-lead",), subject="sam")
    assert (await http.get(path, headers=auditor)).status_code == 200
    assert (await http.get(path, headers=reviewer)).status_code == 200


@pytest.mark.parametrize(
    "token",
    [
        {"subject": "bob"},  # another requester of the tenant
        {"roles": ("procurement-manager",), "subject": "pat"},  # a reviewer not asked
        {"roles": ("auditor",), "subject": "audrey", "tenant": "globex"},  # another tenant
    ],
)
async def test_anyone_else_gets_the_404_of_a_missing_request(
    api: tuple[httpx.AsyncClient, Runtime], settings: Settings, token: dict[str, Any]
) -> None:
    http, runtime = api
    request_id = await _request(runtime)
    answer = await http.get(f"/v1/requests/{request_id}/timeline", headers=_get(settings, **token))
    assert answer.status_code == 404
    missing = await http.get(
        f"/v1/requests/{uuid.uuid4()}/timeline", headers=_get(settings, subject="alice")
    )
    assert missing.status_code == 404
    assert (await http.get(f"/v1/requests/{request_id}/timeline")).status_code == 401


async def test_usage_is_reported_to_auditors_of_the_tenant(
    api: tuple[httpx.AsyncClient, Runtime], settings: Settings
) -> None:
    http, runtime = api
    await _request(runtime)
    await _request(runtime, tenant="globex")
    answer = await http.get("/v1/usage", headers=_get(settings, roles=("auditor",)))
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["tenant"] == "acme"
    assert report["today"] == {"input_tokens": 80, "output_tokens": 30, "cost": 0.0}
    [row] = report["rows"]
    assert (row["workflow"], row["model"], row["calls"]) == (
        "refund",
        "pactmesh-offline:default",
        1,
    )
    assert (await http.get("/v1/usage", headers=_get(settings, subject="alice"))).status_code == 403


async def test_a_tenant_over_its_daily_budget_is_refused_with_429(
    api: tuple[httpx.AsyncClient, Runtime], settings: Settings
) -> None:
    http, runtime = api
    submitter = _get(settings, tenant="thrifty", subject="alice")
    first = await http.post("/v1/requests", json={"text": "hi"}, headers=submitter)
    assert first.status_code == 202, first.text
    await _request(runtime, tenant="thrifty")  # 110 tokens spent today: over its 100
    runtime._spent.clear()  # no waiting out the one-second cache in a test

    refused = await http.post("/v1/requests", json={"text": "hi again"}, headers=submitter)
    assert refused.status_code == 429
    assert "daily token budget of 100 reached (110 tokens spent)" in refused.json()["detail"]
    assert 0 < int(refused.headers["Retry-After"]) <= 86_400
    other = await http.post("/v1/requests", json={"text": "hi"}, headers=_get(settings))
    assert other.status_code == 202, "another tenant's budget is its own"
