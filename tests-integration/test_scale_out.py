"""Several instances of each stateful service on one Postgres (and Redis for the rate
limits), as production runs them: any instance answers for any request and any review.

Two instances of intake, tools, hitl and delivery (the orchestrator and routing once):
purchase orders submitted to one intake (each calling tools, answered through the
inbox both tools instances share) are delivered and read alike on both intakes (with one store
per instance, the instance that did not take a request dropped its progress and most
requests stayed "accepted" forever there); an event stream opened on one intake follows
a request submitted to the other to its result; a review requested through one hitl
instance is decided through the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pactmesh_harness.mesh import Broker, Mesh, wait_for
from pactmesh_harness.scaled import running_scaled_mesh
from pactmesh_harness.workflow_client import (
    decide,
    events,
    finished,
    pending_review,
    status,
    submit,
    wait_status,
)

INTAKES = ("intake", "intake-2")
REQUESTS = 20


@pytest.fixture(scope="module")
def scaled(
    broker: Broker, tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str
) -> Iterator[Mesh]:
    with running_scaled_mesh(
        broker,
        tmp_path_factory.mktemp("scaled"),
        postgres_url=postgres_url,
        redis_url=redis_url,
        instances={"intake": 2, "tools": 2, "hitl": 2, "delivery": 2},
        ready_timeout_s=60,
    ) as mesh:
        print(f"\nmesh: {len(mesh.processes)} processes ready in {mesh.startup_s:.1f}s")
        yield mesh


def _views(mesh: Mesh, request_id: uuid.UUID) -> list[dict[str, Any]]:
    return [status(mesh, request_id, intake=intake) for intake in INTAKES]


@pytest.mark.timeout(360)
def test_requests_submitted_to_one_intake_are_delivered_and_read_alike_on_both(
    scaled: Mesh,
) -> None:
    ids = [
        submit(
            scaled,
            f"Please raise a purchase order for {n % 9 + 1} chairs from Acme,"
            f" ${(n % 9 + 1) * 100} in total",
            scopes=("workflow:procurement",),
        )
        for n in range(REQUESTS)
    ]

    def delivered_everywhere() -> bool:
        return all(v["status"] == "delivered" for rid in ids for v in _views(scaled, rid))

    wait_for(delivered_everywhere, timeout=300, interval=1.0, what="every request delivered")
    for rid in ids:
        first, second = _views(scaled, rid)
        assert first == second
        assert first["result"] is not None
        assert first["result"]["outcome"] == "succeeded"
        assert first["history"][0]["status"] == "accepted"


@pytest.mark.timeout(240)
def test_a_stream_on_one_intake_follows_a_request_submitted_to_the_other(scaled: Mesh) -> None:
    request_id = submit(scaled, "How do I reset my password?", intake="intake")

    streamed = events(scaled, request_id, intake="intake-2")

    statuses = [data["status"] for kind, data in streamed if kind == "progress"]
    assert statuses[0] == "accepted"
    assert statuses[-1] == "delivered"
    kind, result = streamed[-1]
    assert kind == "result"
    # What the stream sent, a status read on either instance returns at once.
    for intake in INTAKES:
        view = status(scaled, request_id, intake=intake)
        assert (view["status"], view["result"]) == ("delivered", result)


@pytest.mark.timeout(300)
def test_a_review_requested_through_one_hitl_is_decided_through_the_other(
    scaled: Mesh,
) -> None:
    request_id = submit(
        scaled,
        "Please raise a purchase order for 25 laptops from Acme, about $30,000",
        scopes=("workflow:procurement",),
        intake="intake-2",
    )
    wait_status(scaled, request_id, "waiting_for_review", timeout=120, intake="intake")
    seen = [pending_review(scaled, request_id, hitl=h)["review_id"] for h in ("hitl", "hitl-2")]
    assert seen[0] == seen[1]

    answer = decide(scaled, seen[0], "approve", roles=["procurement-manager"], hitl="hitl-2")

    assert answer.status_code == 200, answer.text
    values = finished(scaled, request_id, timeout=120)
    assert values["outcome"] == "succeeded"
    assert status(scaled, request_id, intake="intake-2")["status"] == "delivered"
