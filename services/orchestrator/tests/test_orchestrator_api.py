"""The orchestrator's HTTP API without Kafka (the lifespan is never entered): a run is
served to its own tenant's readers only, the cache counters to operators only."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pactmesh_kit.auth.testing import bearer
from pactmesh_orchestrator.app import create_app
from pactmesh_orchestrator.runtime import Runtime
from pactmesh_orchestrator.settings import Settings


@dataclass
class Snapshot:
    """What ``Engine.state`` answers, as far as the API reads it."""

    values: dict[str, Any]
    next: tuple[str, ...] = ()
    interrupts: tuple[Any, ...] = ()
    config: dict[str, Any] = field(
        default_factory=lambda: {"configurable": {"checkpoint_id": "c-1"}}
    )
    created_at: str = "2026-01-01T00:00:00+00:00"


class Engine:
    """Runs of tenant acme, by id."""

    workflows = ("support-triage", "refund")

    def __init__(self, runs: dict[uuid.UUID, Snapshot]) -> None:
        self.runs = runs

    async def state(self, workflow_id: uuid.UUID) -> Snapshot | None:
        return self.runs.get(workflow_id)


RUN = uuid.uuid4()
WAITING = uuid.uuid4()


@dataclass
class Interrupt:
    value: dict[str, Any]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, cache_enabled=False)


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    runtime: Runtime = app.state.runtime
    waiting = Snapshot(
        {"tenant": "acme", "workflow": "refund", "pause_key": str(uuid.uuid4())},
        next=("approve_refund",),
        interrupts=(
            Interrupt({"type": "review.requested.v1", "review_id": "r-1", "rule": "refund.x"}),
        ),
    )
    runs = {RUN: Snapshot({"tenant": "acme", "workflow": "refund"}), WAITING: waiting}
    runtime.engine = Engine(runs)  # type: ignore[assignment]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://orchestrator") as client:
        yield client


def _as(settings: Settings, role: str, tenant: str = "acme") -> dict[str, str]:
    return bearer(settings, tenant=tenant, roles=(role,))


@pytest.mark.parametrize("role", ["requester", "auditor"])
async def test_a_run_is_served_to_its_tenants_readers(
    http: httpx.AsyncClient, settings: Settings, role: str
) -> None:
    response = await http.get(f"/v1/workflows/runs/{RUN}", headers=_as(settings, role))
    assert response.status_code == 200
    assert response.json()["values"] == {"tenant": "acme", "workflow": "refund"}
    assert response.json()["checkpoint_id"] == "c-1"


async def test_a_reader_sees_what_a_run_waits_for_but_not_how_to_answer_it(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    response = await http.get(f"/v1/workflows/runs/{WAITING}", headers=_as(settings, "requester"))
    assert response.status_code == 200
    run = response.json()
    assert run["values"] == {"tenant": "acme", "workflow": "refund"}
    assert run["waiting_for"] == [{"type": "review.requested.v1", "rule": "refund.x"}]


async def test_another_tenants_run_is_a_404_like_a_missing_one(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    globex = _as(settings, "requester", tenant="globex")
    other = await http.get(f"/v1/workflows/runs/{RUN}", headers=globex)
    missing = await http.get(f"/v1/workflows/runs/{uuid.uuid4()}", headers=globex)
    assert (other.status_code, missing.status_code) == (404, 404)
    assert other.json() == {"detail": f"no run {RUN}"}


async def test_runs_need_a_token_and_runs_read(http: httpx.AsyncClient, settings: Settings) -> None:
    assert (await http.get(f"/v1/workflows/runs/{RUN}")).status_code == 401
    reviewer = await http.get(f"/v1/workflows/runs/{RUN}", headers=_as(settings, "reviewer"))
    assert reviewer.status_code == 403


async def test_the_workflows_are_listed_to_any_caller_with_a_token(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await http.get("/v1/workflows")).status_code == 401
    listed = await http.get("/v1/workflows", headers=_as(settings, "reviewer"))
    assert listed.json() == {"workflows": ["support-triage", "refund"]}


async def test_cache_counters_are_for_operators(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    assert (await http.get("/v1/cache/stats")).status_code == 401
    denied = await http.get("/v1/cache/stats", headers=_as(settings, "requester"))
    assert denied.status_code == 403
    stats = await http.get("/v1/cache/stats", headers=_as(settings, "operator"))
    assert stats.json() == {"enabled": False}
