"""Micro-benchmarks of the components the mesh's profile pointed at, each on its own:
CPU per span exported to the local trace file, per status transition and per audit
record kept by intake's SQLite stores, per accepted request kept and looked up by tools'
and delivery's, per finished workflow hitl looks up for reviews to withdraw, per result
delivery looks up for webhooks to queue it for and in its ledger (256 at once, as a
subscriber's batch arrives).

``uv run --no-sync python bench/micro.py``: prints the figures (docs/benchmarks.md
quotes them beside each lever's A/B; run it on the commits before and after a change).
Bounded: a few seconds.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from pactmesh_contracts.envelope import Principal, new_event
from pactmesh_contracts.events import AuditRecorded, Channel, RequestStatus
from pactmesh_delivery.adapters.secrets import SecretBox, generated_key
from pactmesh_delivery.adapters.sqlite_store import open_sqlite_stores as open_delivery_stores
from pactmesh_delivery.domain.webhooks import ResultRecord
from pactmesh_hitl.adapters.sqlite_store import open_sqlite_store as open_review_store
from pactmesh_intake.adapters.audit_store import open_audit_store
from pactmesh_intake.adapters.sqlite_store import open_sqlite_store
from pactmesh_intake.domain.requests import Transition
from pactmesh_kit.stores.accepted import open_accepted
from pactmesh_kit.stores.settings import StoreSettings
from pactmesh_kit.telemetry import FileSpanExporter

AT_ONCE = 256
STATUSES = [
    RequestStatus.ROUTED,
    *[RequestStatus.RUNNING] * 4,
    RequestStatus.COMPLETED,
    RequestStatus.DELIVERED,
]


def spans_us(batches: int = 40, batch: int = 512) -> float:
    """CPU µs per span written by the file exporter, in the batch processor's batches."""
    tracer = TracerProvider(shutdown_on_exit=False).get_tracer("bench")
    spans: list[Any] = []
    for _ in range(batch):
        with tracer.start_as_current_span("orchestrator invoke_workflow support-triage") as s:
            s.set_attribute("pactmesh.workflow_id", str(uuid.uuid4()))
            s.set_attribute("messaging.destination.name", "pactmesh.workflow.progress")
            s.set_attribute("messaging.kafka.message.key", b"3f1e0c7a-8d9b")
        spans.append(s)
    exporter = FileSpanExporter(Path(tempfile.mkdtemp()) / "spans.jsonl")
    started = time.process_time()
    for _ in range(batches):
        exporter.export(spans)
    spent = time.process_time() - started
    exporter.shutdown()
    return spent * 1e6 / (batches * batch)


async def transitions_us(requests: int = 800) -> float:
    """CPU µs per status transition recorded (seven per request, ``AT_ONCE`` at once)."""
    async with open_sqlite_store(Path(tempfile.mkdtemp()) / "requests.sqlite3") as store:
        ids = [uuid.uuid4() for _ in range(requests)]
        for request_id in ids:
            await store.create(
                request_id=request_id, tenant="t", channel=Channel.HTTP, at=datetime.now(UTC)
            )
        transitions = [
            Transition(
                event_id=uuid.uuid4(),
                request_id=request_id,
                status=status,
                service="orchestrator",
                at=datetime.now(UTC),
            )
            for status in STATUSES
            for request_id in ids
        ]
        started = time.process_time()
        for n in range(0, len(transitions), AT_ONCE):
            await asyncio.gather(*(store.record(t) for t in transitions[n : n + AT_ONCE]))
        spent = time.process_time() - started
        view = await store.get(ids[0])
        assert view is not None
        assert view.status is RequestStatus.DELIVERED
        return spent * 1e6 / len(transitions)


async def audits_us(count: int = 5000) -> float:
    """CPU µs per audit record kept (``AT_ONCE`` at once)."""
    events = [
        new_event(
            AuditRecorded(service="orchestrator", action="step", detail={"step": "draft"}),
            workflow_id=uuid.uuid4(),
            tenant="t",
            principal=Principal(subject="bench"),
        )
        for _ in range(count)
    ]
    async with open_audit_store(data_dir=Path(tempfile.mkdtemp()), postgres_url=None) as store:
        started = time.process_time()
        for n in range(0, count, AT_ONCE):
            await asyncio.gather(*(store.record(e) for e in events[n : n + AT_ONCE]))
        return (time.process_time() - started) * 1e6 / count


async def accepted_us(count: int = 5000) -> tuple[float, float]:
    """CPU µs per accepted request recorded by tools' and delivery's provenance store,
    then per one looked up by their provenance check (each tool call, each result),
    ``AT_ONCE`` at once."""
    principal = Principal(subject="bench", roles=("upstream-system",))
    ids = [uuid.uuid4() for _ in range(count)]
    settings = StoreSettings(data_dir=Path(tempfile.mkdtemp()), postgres_url=None)
    async with open_accepted(settings) as store:
        started = time.process_time()
        for n in range(0, count, AT_ONCE):
            await asyncio.gather(
                *(
                    store.insert(i, tenant="t", principal=principal, at=time.time())
                    for i in ids[n : n + AT_ONCE]
                )
            )
        kept = time.process_time() - started
        started = time.process_time()
        for n in range(0, count, AT_ONCE):
            found = await asyncio.gather(*(store.find(i) for i in ids[n : n + AT_ONCE]))
            assert all(f == ("t", principal) for f in found)
        looked_up = time.process_time() - started
        return kept * 1e6 / count, looked_up * 1e6 / count


async def withdrawn_us(count: int = 5000) -> float:
    """CPU µs per finished workflow hitl withdraws the reviews of, none pending (what
    almost every workflow is), ``AT_ONCE`` at once."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with open_review_store(Path(tempfile.mkdtemp()) / "reviews.sqlite3") as store:
        now = datetime.now(UTC)
        started = time.process_time()
        for n in range(0, count, AT_ONCE):
            withdrawn = await asyncio.gather(
                *(store.withdraw_for(i, now=now) for i in ids[n : n + AT_ONCE])
            )
            assert not any(withdrawn)
        return (time.process_time() - started) * 1e6 / count


async def results_us(count: int = 5000) -> float:
    """CPU µs per result delivery looks up: its ledger entry (none yet), then the
    webhooks of its tenant to queue it for (none, as for most tenants), ``AT_ONCE`` at
    once."""
    data = Path(tempfile.mkdtemp())
    records = [
        ResultRecord(
            result_event_id=uuid.uuid4(),
            workflow_id=uuid.uuid4(),
            workflow="support-triage",
            tenant="acme",
            body=b"{}",
            key=None,
            headers={},
            source_topic="results.support-triage",
            source_partition=0,
            source_offset=n,
            trace_context={},
        )
        for n in range(count)
    ]
    box = SecretBox([generated_key(data)])
    async with open_delivery_stores(data / "delivery.sqlite3", box=box) as (ledger, webhooks):

        async def one(record: ResultRecord) -> int:
            assert await ledger.entry(record.workflow_id) is None
            return await webhooks.enqueue(record, now=time.time())

        started = time.process_time()
        for n in range(0, count, AT_ONCE):
            queued = await asyncio.gather(*(one(r) for r in records[n : n + AT_ONCE]))
            assert not any(queued)
        return (time.process_time() - started) * 1e6 / count


def main() -> None:
    print(f"span exported to the trace file: {spans_us():.1f} us CPU")
    print(f"intake status transition: {asyncio.run(transitions_us()):.0f} us CPU")
    print(f"intake audit record: {asyncio.run(audits_us()):.0f} us CPU")
    kept, looked_up = asyncio.run(accepted_us())
    print(f"accepted request kept (tools, delivery): {kept:.0f} us CPU")
    print(f"accepted request looked up (tools, delivery): {looked_up:.0f} us CPU")
    print(f"hitl, a finished workflow's reviews withdrawn: {asyncio.run(withdrawn_us()):.0f} us")
    print(f"delivery, a result's ledger entry and webhooks: {asyncio.run(results_us()):.0f} us")


if __name__ == "__main__":
    main()
