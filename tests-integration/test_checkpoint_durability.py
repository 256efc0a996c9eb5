"""The orchestrator checkpointing only at pauses and at the end
(``PACTMESH_ORCHESTRATOR_CHECKPOINT_DURABILITY=exit``), killed between every pair of
steps of one workflow: for each N, a purchase order over the approval threshold is
submitted to an orchestrator whose process exits as kill -9 would after the run's Nth
step (``PACTMESH_ORCHESTRATOR_TEST_EXIT_AFTER_STEP``: a node's update, a pause, or the
end of a segment, its checkpoint written and nothing published yet); the orchestrator
is restarted and the run must complete exactly once: one result, one purchase order in
the sandbox ledger, one call id per tool step and one review id on the topics however
often they were published, the same history as a run that was never killed. N goes up
until a run completes without the process exiting: every step of the workflow was a
kill point."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from pactmesh_contracts.topics import RESULTS, REVIEWS_REQUESTED, TOOL_CALLS
from pactmesh_harness.mesh import Broker, Mesh, read_from_start, running_mesh, wait_for
from pactmesh_harness.workflow_client import (
    decide,
    entries_for,
    history_events,
    reviews,
    run,
    status,
    submit,
)
from pactmesh_workflows.registry import registry

HOOK = "PACTMESH_ORCHESTRATOR_TEST_EXIT_AFTER_STEP"
ORDER = "Please raise a purchase order for 25 laptops from Acme, about $30,000"
MOST_STEPS = 40
"""More kill points than the workflow has steps: the test fails rather than loop on."""


def _restart(mesh: Mesh, step: int) -> None:
    """Start the orchestrator again (the exited one is gone) with the hook at ``step``."""
    mesh.stop("orchestrator")
    mesh.extra_env[HOOK] = str(step)
    mesh.start("orchestrator")
    # Bounded generously: its start-up (imports) took over 60 s under load 20 here.
    wait_for(lambda: mesh.ready("orchestrator"), timeout=180, interval=0.5, what="orchestrator")


def _drive(mesh: Mesh, rid: uuid.UUID, timeout: float) -> bool:
    """Approve the run's reviews as they come; True as soon as the orchestrator has
    exited, False once the request is delivered."""

    def outcome() -> str | None:
        process = mesh.processes["orchestrator"]
        if process.poll() is not None:
            assert process.returncode == 128 + signal.SIGKILL, mesh.log("orchestrator")[-3000:]
            return "exited"
        if status(mesh, rid, missing_ok=True).get("status") == "delivered":
            return "delivered"
        for review in reviews(mesh):
            if review["workflow_id"] == str(rid):
                decide(mesh, review["review_id"], "approve", roles=["procurement-manager"])
        return None

    ended: str = wait_for(outcome, timeout=timeout, interval=0.5, what=f"{rid} ends")
    return ended == "exited"


async def _topics(mesh: Mesh, ids: set[uuid.UUID]) -> dict[str, Any]:
    """Per run: its results, the call ids of each tool it asked for, its review ids."""
    results: Counter[uuid.UUID] = Counter()
    calls: dict[tuple[uuid.UUID, str], set[uuid.UUID]] = defaultdict(set)
    review_ids: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    result_topics = {t.qualified(mesh.prefix) for t in registry().result_topics()}
    tool_calls = TOOL_CALLS.qualified(mesh.prefix)
    asked = REVIEWS_REQUESTED.qualified(mesh.prefix)

    def record(message: Any) -> None:
        if message.topic in result_topics:
            found = RESULTS.adapter.validate_json(message.value)
            results[found.workflow_id] += 1
        elif message.topic == tool_calls:
            call = TOOL_CALLS.adapter.validate_json(message.value)
            calls[(call.workflow_id, call.payload.tool)].add(call.payload.call_id)
        elif message.topic == asked:
            review = REVIEWS_REQUESTED.adapter.validate_json(message.value)
            review_ids[review.workflow_id].add(review.payload.review_id)

    await read_from_start(
        mesh,
        [*result_topics, tool_calls, asked],
        on_record=record,
        done=lambda: ids <= set(results),
        deadline_s=60,
        linger_s=2.0,
    )
    return {"results": results, "calls": calls, "reviews": review_ids}


@pytest.mark.timeout(1500)
def test_killed_after_every_step_with_checkpoints_at_pauses_only(
    broker: Broker, tmp_path: Path
) -> None:
    env = {
        "PACTMESH_ORCHESTRATOR_CHECKPOINT_DURABILITY": "exit",
        "PACTMESH_ORCHESTRATOR_CACHE_ENABLED": "false",  # not used by procurement
        HOOK: "1",
    }
    started = time.monotonic()
    killed: list[uuid.UUID] = []
    with running_mesh(broker, tmp_path, env=env) as mesh:
        for step in range(1, MOST_STEPS + 1):
            rid = submit(mesh, ORDER, "procurement")
            if not _drive(mesh, rid, timeout=180):
                break  # past the workflow's last step: it never exited
            killed.append(rid)
            print(f"step {step}: exited at {time.monotonic() - started:.0f}s", flush=True)
            _restart(mesh, step + 1)
            assert not _drive(mesh, rid, timeout=180), "a run makes one process exit at most"
        else:
            pytest.fail(f"the orchestrator still exited after step {MOST_STEPS}")
        unkilled = rid
        print(f"\nkilled after each of {len(killed)} steps in {time.monotonic() - started:.0f}s")
        # validate, read, check_policy asked, its segment's end, check_policy answered,
        # draft_report, the review asked, ... : well over ten kill points.
        assert len(killed) >= 10

        every = [*killed, unkilled]
        expected = history_events(run(mesh, unkilled)["values"])
        for rid in every:
            values = run(mesh, rid)["values"]
            assert values["outcome"] == "succeeded", (rid, values.get("error"))
            assert history_events(values) == expected, f"killed after step {every.index(rid) + 1}"
            assert [e["kind"] for e in entries_for(mesh, rid)] == ["purchase_order"]
        seen = asyncio.run(_topics(mesh, set(every)))
        assert {rid: seen["results"][rid] for rid in every} == dict.fromkeys(every, 1)
        for rid in every:
            tools = {tool: ids for (wid, tool), ids in seen["calls"].items() if wid == rid}
            assert sorted(tools) == ["erp.create_purchase_order", "procurement.check_policy"]
            assert all(len(ids) == 1 for ids in tools.values()), f"call ids of {rid}: {tools}"
            assert len(seen["reviews"][rid]) == 1, f"review ids of {rid}"
