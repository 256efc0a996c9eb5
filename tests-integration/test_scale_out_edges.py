"""The edges of running several instances: a tenant's rate limit is one count across
intake instances (Redis), and on SQLite a second instance on one data dir refuses to
start, saying why."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from pactmesh_harness.mesh import Broker, free_port, running_mesh, wait_for


@pytest.mark.timeout(240)
def test_two_intake_instances_share_one_tenants_rate_limit(
    broker: Broker, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = {
        "PACTMESH_POSTGRES_URL": postgres_url,
        "PACTMESH_INTAKE_RATE_LIMIT_STORAGE": redis_url,
        "PACTMESH_INTAKE_SUBMIT_RATE_LIMIT": "4/minute",
    }
    with running_mesh(
        broker, tmp_path, env=env, services=("intake",), instances={"intake": 2}
    ) as mesh:
        tenant = f"limited-{uuid.uuid4().hex[:8]}"
        token = mesh.bearer(tenant=tenant, roles=("requester",))
        answers = [
            httpx.post(
                f"{mesh.url(intake)}/v1/requests",
                json={"text": f"where is order {n}?"},
                headers=token,
                timeout=10,
            )
            for n, intake in enumerate(["intake", "intake-2"] * 4)
        ]

    assert [a.status_code for a in answers] == [202] * 4 + [429] * 4
    assert all(0 < int(a.headers["retry-after"]) <= 60 for a in answers[4:])


@pytest.mark.timeout(180)
def test_a_second_sqlite_instance_on_one_data_dir_refuses_to_start(
    broker: Broker, tmp_path: Path
) -> None:
    with running_mesh(broker, tmp_path, services=("intake",)) as mesh:
        mesh.ports["intake-2"] = free_port()
        mesh.start("intake-2")
        process = mesh.processes["intake-2"]

        code = wait_for(lambda: process.poll(), timeout=60, what="the second instance exits")

        assert code != 0
        assert f"another intake instance runs on {tmp_path}" in mesh.log("intake-2")
        assert "PACTMESH_POSTGRES_URL" in mesh.log("intake-2")
        assert mesh.ready("intake")
