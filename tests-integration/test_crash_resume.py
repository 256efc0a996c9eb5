"""kill -9 of the orchestrator in the middle of 100 running workflows: every workflow
completes, every result is delivered exactly once, and the sandbox ledger shows every
purchase order exactly once. On Postgres, a second instance takes over."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from pactmesh_contracts.topics import RESULTS
from pactmesh_harness.mesh import Broker, Mesh, read_from_start, running_mesh, wait_for
from pactmesh_harness.workflow_client import fault, ledger, requester, submit
from pactmesh_workflows.registry import registry

WORKFLOWS = 100


def _submit_many(mesh: Mesh) -> list[uuid.UUID]:
    quantities = [n % 9 + 1 for n in range(WORKFLOWS)]
    return [
        submit(
            mesh,
            f"Please raise a purchase order for {q} chairs from Acme, ${q * 100} in total",
            scopes=("workflow:procurement",),
        )
        for q in quantities
    ]


def _delivered(mesh: Mesh, ids: list[uuid.UUID]) -> int:
    with httpx.Client(base_url=mesh.url("intake"), headers=requester(mesh), timeout=10) as client:
        return sum(client.get(f"/v1/requests/{rid}").json()["status"] == "delivered" for rid in ids)


async def _results(mesh: Mesh, expected: set[uuid.UUID], deadline_s: float) -> Counter[uuid.UUID]:
    seen: Counter[uuid.UUID] = Counter()

    def count(record: Any) -> None:
        seen[RESULTS.adapter.validate_json(record.value).workflow_id] += 1

    await read_from_start(
        mesh,
        [t.qualified(mesh.prefix) for t in registry().result_topics()],
        on_record=count,
        done=lambda: expected <= set(seen),
        deadline_s=deadline_s,
        linger_s=3.0,
    )
    return seen


def _crash_and_recover(mesh: Mesh, victim: str, *, restart: bool) -> None:
    fault(mesh, "erp", latency_ms=150)  # keep workflows in flight long enough to be caught
    ids = _submit_many(mesh)
    wait_for(
        lambda: _delivered(mesh, ids) >= 10, timeout=120, interval=0.5, what="the first results"
    )
    in_flight = WORKFLOWS - _delivered(mesh, ids)
    mesh.stop(victim, sig=signal.SIGKILL)
    print(f"\nkilled {victim} with about {in_flight} of {WORKFLOWS} workflows in flight")
    if restart:
        mesh.start(victim)
        wait_for(lambda: mesh.ready(victim), timeout=60, what=f"{victim} back")
    wait_for(
        lambda: _delivered(mesh, ids) == WORKFLOWS, timeout=240, interval=1.0, what="all delivered"
    )

    results = asyncio.run(_results(mesh, set(ids), deadline_s=60))
    assert set(results) == set(ids)
    assert [rid for rid, n in results.items() if n != 1] == [], "every result exactly once"
    orders = Counter(e["idempotency_key"] for e in ledger(mesh, "purchase_order"))
    wrong = {
        str(rid): orders[f"{rid}:commit_order"] for rid in ids if orders[f"{rid}:commit_order"] != 1
    }
    assert wrong == {}, (
        f"orders per workflow should be 1: {wrong}; outcomes {_outcomes(mesh, wrong)}"
    )
    assert sum(orders.values()) == WORKFLOWS


def _outcomes(mesh: Mesh, workflow_ids: dict[str, int]) -> dict[str, object]:
    found: dict[str, object] = {}
    for rid in workflow_ids:
        values = httpx.get(
            f"{mesh.url('orchestrator')}/v1/workflows/runs/{rid}",
            headers=requester(mesh),
            timeout=10,
        ).json()
        found[rid] = (
            values.get("values", {}).get("outcome"),
            values.get("values", {}).get("error"),
            [(h["step"], h["event"]) for h in values.get("values", {}).get("history", [])],
        )
    return found


@pytest.mark.timeout(480)
def test_kill_9_on_sqlite_then_restart(broker: Broker, tmp_path: pytest.TempPathFactory) -> None:
    with running_mesh(broker, tmp_path) as mesh:  # type: ignore[arg-type]
        _crash_and_recover(mesh, "orchestrator", restart=True)


@pytest.mark.timeout(480)
def test_kill_9_on_postgres_second_instance_takes_over(
    broker: Broker, tmp_path: pytest.TempPathFactory, postgres_url: str
) -> None:
    env = {"PACTMESH_POSTGRES_URL": postgres_url}
    with running_mesh(broker, tmp_path, env=env, orchestrators=2) as mesh:  # type: ignore[arg-type]
        _crash_and_recover(mesh, "orchestrator", restart=False)
