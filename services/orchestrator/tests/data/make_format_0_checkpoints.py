"""Writes ``format-0-checkpoints.sqlite3`` and ``format-0-runs.json``: workflow runs
paused at tool calls and at reviews, checkpointed by the orchestrator as it was before
checkpoints carried a format version (state as a plain dict, pauses told apart by a
``kind`` string, tool and review answers in checkpoint-side mirror types).

It imports that code, so it runs only at the commit that added it (``git log`` on this
file); later commits keep the files it wrote, to prove they still load and finish.

    git checkout <that commit> && uv run --no-sync python \\
        services/orchestrator/tests/data/make_format_0_checkpoints.py
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    RequestRouted,
    ReviewDecided,
    ReviewDecision,
    ReviewRequested,
    ToolCallCompleted,
    ToolCallFailed,
    ToolCallRequested,
    ToolErrorCode,
)
from pactmesh_orchestrator.adapters.sqlite_store import open_sqlite_store
from pactmesh_orchestrator.domain.engine import Engine
from pactmesh_orchestrator.domain.policy import GatePolicy
from pactmesh_orchestrator.domain.registry import discover
from pactmesh_orchestrator.testing import CollectingPublisher

HERE = Path(__file__).resolve().parent
DATABASE = HERE / "format-0-checkpoints.sqlite3"
RUNS = HERE / "format-0-runs.json"

# Answers as the tools service sends them: complete, checked against each tool's result.
ORDER = {
    "order_id": "4411",
    "status": "delivered",
    "total": 500.0,
    "currency": "USD",
    "items": ["espresso machine"],
    "customer_id": "C-1001",
}
POLICY_CHECK = {"within_policy": False, "flags": [], "approval_limit": 10000.0}
KB = {"hits": [{"id": "kb-009", "title": "Rare", "answer": "Ask billing.", "score": 0.2}]}


class Writer:
    """Starts runs and answers their first calls until each waits where it should."""

    def __init__(self, engine: Engine, publisher: CollectingPublisher) -> None:
        self.engine, self.publisher = engine, publisher

    async def start(self, workflow: str, text: str, **routed: Any) -> uuid.UUID:
        fields = routed.pop("fields", {})
        event = new_event(
            RequestRouted(
                workflow=workflow,
                confidence=routed.pop("confidence", 0.9),
                reason="format-0 fixture",
                text=text,
                fields=fields,
                metadata={"fixture": "format-0"},
                **routed,
            ),
            workflow_id=uuid.uuid4(),
            tenant="acme",
            principal=Principal(subject="user-1", roles=("requester",)),
        )
        await self.engine.start(event)
        return event.workflow_id

    def pending(self, workflow_id: uuid.UUID) -> Envelope[Any]:
        """The last tool call or review the run asked for."""
        asked = [
            e
            for e in self.publisher.events
            if e.workflow_id == workflow_id
            and isinstance(e.payload, ToolCallRequested | ReviewRequested)
        ]
        return asked[-1]

    async def answer(self, workflow_id: uuid.UUID, result: dict[str, Any] | None) -> None:
        """Answer the run's pending tool call (``None``: a non-retryable failure)."""
        call = self.pending(workflow_id)
        assert isinstance(call.payload, ToolCallRequested), call.payload
        payload: ToolCallCompleted | ToolCallFailed = (
            ToolCallCompleted(
                call_id=call.payload.call_id, tool=call.payload.tool, result=result, duration_ms=7
            )
            if result is not None
            else ToolCallFailed(
                call_id=call.payload.call_id,
                tool=call.payload.tool,
                error_code=ToolErrorCode.BACKEND_ERROR,
                message="carrier answered 400",
                retryable=False,
                attempts=1,
            )
        )
        await self.engine.resume(call.follow(payload))

    async def expire(self, workflow_id: uuid.UUID) -> None:
        """Expire the run's pending review (its gate escalates)."""
        review = self.pending(workflow_id)
        assert isinstance(review.payload, ReviewRequested), review.payload
        decided = ReviewDecided(
            review_id=review.payload.review_id,
            decision=ReviewDecision.EXPIRE,
            reviewer="policy:expiry",
            comment="deadline passed",
        )
        await self.engine.decide(review.follow(decided))


async def write() -> list[dict[str, Any]]:
    """Every fixture run, paused; returns what each waits for."""
    runs: list[dict[str, Any]] = []
    async with open_sqlite_store(DATABASE) as (saver, outbox):
        publisher = CollectingPublisher(wire_check=True)
        policy = GatePolicy.load()
        graphs = {n: d.build(policy).compile(checkpointer=saver) for n, d in discover().items()}
        engine = Engine(
            graphs=graphs,
            checkpointer=saver,
            publisher=publisher,
            outbox=outbox,
            tool_timeout_s=20.0,
        )
        w = Writer(engine, publisher)

        def paused(name: str, workflow_id: uuid.UUID, note: str) -> None:
            runs.append(
                {
                    "name": name,
                    "note": note,
                    "workflow_id": str(workflow_id),
                    "waiting_for": json.loads(w.pending(workflow_id).model_dump_json()),
                }
            )

        wid = await w.start(
            "refund", "Refund $100 for order 4411", fields={"order_id": "4411", "amount": 100.0}
        )
        paused("refund-at-lookup", wid, "waits for crm.get_order")

        wid = await w.start(
            "refund", "Refund $800 for order 4411", fields={"order_id": "4411", "amount": 800.0}
        )
        await w.answer(wid, ORDER)
        paused("refund-out-of-policy", wid, "waits at check_refund_policy (800 > total 500)")

        text = "Please raise a purchase order for 12 laptops from Acme Supplies"
        wid = await w.start("procurement", text, fields={"amount": 12000.0})
        await w.answer(wid, POLICY_CHECK)
        paused("procurement-at-gate", wid, "waits at approve_purchase_order (12000 > 10000)")

        wid = await w.start("procurement", text, fields={"amount": 12000.0})
        await w.answer(wid, POLICY_CHECK)
        await w.expire(wid)
        paused("procurement-escalated", wid, "waits for the finance director (attempt 1)")

        wid = await w.start(
            "supply-chain-reroute", "Reroute shipment SH-77", fields={"shipment_id": "SH-77"}
        )
        await w.answer(wid, None)
        paused("reroute-next-carrier", wid, "northwind failed; waits for oceanic's quote")

        wid = await w.start("support-triage", "My invoice shows a strange fee", confidence=0.1)
        await w.answer(wid, KB)
        paused("triage-handover", wid, "waits at human_triage (routing confidence 0.1)")
    return runs


def compact() -> None:
    """One self-contained file (no WAL beside it), as small as SQLite makes it."""
    with sqlite3.connect(DATABASE) as db:
        db.execute("PRAGMA journal_mode=DELETE")
    db = sqlite3.connect(DATABASE, isolation_level=None)
    db.execute("VACUUM")
    db.close()


def main() -> None:
    """Write both files."""
    for stale in (DATABASE, Path(f"{DATABASE}-wal"), Path(f"{DATABASE}-shm")):
        stale.unlink(missing_ok=True)
    runs = asyncio.run(write())
    compact()
    RUNS.write_text(json.dumps(runs, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {len(runs)} paused runs to {DATABASE.name} and {RUNS.name}")


if __name__ == "__main__":
    main()
