"""The audit store's contract, run against both implementations (SQLite and Postgres):
events kept once and read back in order, model calls counted once per tenant, day,
workflow and model, and pruning."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import (
    AuditModelCalled,
    AuditRequestAccepted,
    AuditWorkflowCompleted,
    Channel,
    Outcome,
)
from pactmesh_contracts.usage import Usage
from pactmesh_harness.postgres import PostgresServer
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_intake.adapters.audit_store import AUDIT_FILE, open_audit_store
from pactmesh_intake.domain.timeline import AuditStore

ALICE = Principal(subject="alice", roles=("requester",))
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def store(store_backend: StoreBackend) -> AsyncIterator[AuditStore]:
    async with open_audit_store(
        data_dir=store_backend.data_dir, postgres_url=store_backend.postgres_url
    ) as opened:
        yield opened


def _event(payload: Any, request_id: uuid.UUID, at: datetime, tenant: str) -> Envelope[Any]:
    event = new_event(payload, workflow_id=request_id, tenant=tenant, principal=ALICE)
    return event.model_copy(update={"occurred_at": at})


def _call(tokens: int, cost: float, *, workflow: str = "refund", model: str = "m:1") -> Any:
    return AuditModelCalled(
        service="routing",
        role="routing",
        workflow=workflow,
        model=model,
        usage=Usage(input_tokens=tokens, output_tokens=tokens // 2, cost=cost),
    )


async def test_events_are_kept_once_and_read_back_in_order(store: AuditStore) -> None:
    request, tenant = uuid.uuid4(), f"t-{uuid.uuid4().hex[:8]}"
    done = _event(
        AuditWorkflowCompleted(workflow="refund", outcome=Outcome.SUCCEEDED),
        request,
        T0 + timedelta(seconds=5),
        tenant,
    )
    accepted = _event(
        AuditRequestAccepted(channel=Channel.HTTP, text="refund 4411"), request, T0, tenant
    )
    assert await store.record(done) is True
    assert await store.record(accepted) is True
    assert await store.record(done) is False, "a redelivery is kept once"
    events = await store.events(request)
    assert [e.event_id for e in events] == [accepted.event_id, done.event_id]
    assert events[0] == accepted
    assert await store.events(uuid.uuid4()) == []


async def test_model_calls_are_counted_per_day_workflow_and_model(store: AuditStore) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    first = _event(_call(100, 0.01), uuid.uuid4(), T0, tenant)
    events = [
        first,
        _event(_call(40, 0.002), uuid.uuid4(), T0 + timedelta(hours=1), tenant),
        _event(_call(10, 0.0, model="m:2"), uuid.uuid4(), T0, tenant),
        _event(_call(7, 0.0, workflow="procurement"), uuid.uuid4(), T0 + timedelta(days=1), tenant),
        _event(_call(999, 9.0), uuid.uuid4(), T0, f"other-{tenant}"),
    ]
    for event in events:
        assert await store.record(event)
    assert await store.record(first) is False  # counted once

    spent = await store.spent(tenant, T0.date())
    assert spent == Usage(input_tokens=150, output_tokens=75, cost=0.012)
    rows = await store.usage(tenant, T0.date())
    assert [(r.day, r.workflow, r.model, r.calls, r.input_tokens) for r in rows] == [
        (T0.date(), "refund", "m:1", 2, 140),
        (T0.date(), "refund", "m:2", 1, 10),
        ((T0 + timedelta(days=1)).date(), "procurement", "m:1", 1, 7),
    ]
    assert await store.usage(tenant, (T0 + timedelta(days=1)).date()) == rows[-1:]
    assert await store.spent(tenant, (T0 - timedelta(days=1)).date()) == Usage()


async def test_events_past_retention_are_pruned(store: AuditStore) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    old, new = uuid.uuid4(), uuid.uuid4()
    await store.record(_event(_call(5, 0.0), old, T0 - timedelta(days=400), tenant))
    await store.record(_event(_call(5, 0.0), new, T0, tenant))
    pruned = await store.prune(T0 - timedelta(days=365))
    assert pruned >= 1
    assert await store.events(old) == []
    assert len(await store.events(new)) == 1
    assert await store.spent(tenant, (T0 - timedelta(days=400)).date()) == Usage()


async def test_events_and_counts_survive_reopening_the_store(store_backend: StoreBackend) -> None:
    tenant, request = f"t-{uuid.uuid4().hex[:8]}", uuid.uuid4()
    event = _event(_call(12, 0.5), request, T0, tenant)
    options = {"data_dir": store_backend.data_dir, "postgres_url": store_backend.postgres_url}
    async with open_audit_store(**options) as first:
        assert await first.record(event)
    async with open_audit_store(**options) as again:
        assert await again.events(request) == [event]
        assert (await again.spent(tenant, T0.date())).input_tokens == 12
        assert await again.record(event) is False


PREVIOUS_RELEASE = {
    "sqlite": """
CREATE TABLE audit_events (event_id TEXT PRIMARY KEY, request_id TEXT NOT NULL,
    tenant TEXT NOT NULL, type TEXT NOT NULL, occurred_at TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX audit_events_by_request ON audit_events (request_id, occurred_at);
CREATE INDEX audit_events_by_age ON audit_events (occurred_at);
CREATE TABLE usage_daily (tenant TEXT NOT NULL, day TEXT NOT NULL, workflow TEXT NOT NULL,
    model TEXT NOT NULL, calls INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL, cost REAL NOT NULL,
    PRIMARY KEY (tenant, day, workflow, model));
INSERT INTO usage_daily VALUES ('acme', '2026-12-01', 'refund', 'm:1', 1, 40, 20, 0.25);
""",
    "postgres": """
CREATE TABLE audit_events (event_id uuid PRIMARY KEY, request_id uuid NOT NULL,
    tenant text NOT NULL, type text NOT NULL, occurred_at timestamptz NOT NULL,
    body text NOT NULL);
CREATE INDEX audit_events_by_request ON audit_events (request_id, occurred_at);
CREATE INDEX audit_events_by_age ON audit_events (occurred_at);
CREATE TABLE usage_daily (tenant text NOT NULL, day date NOT NULL, workflow text NOT NULL,
    model text NOT NULL, calls bigint NOT NULL, input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL, cost double precision NOT NULL,
    PRIMARY KEY (tenant, day, workflow, model));
INSERT INTO usage_daily VALUES ('acme', '2026-12-01', 'refund', 'm:1', 1, 40, 20, 0.25);
""",
}
"""The tables as the store created them before Alembic (``CREATE TABLE`` at opening),
with a day's usage in them."""


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_store_written_before_migrations_opens_with_its_rows(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    postgres_url = None
    if kind == "sqlite":
        with closing(sqlite3.connect(tmp_path / AUDIT_FILE)) as conn:
            conn.executescript(PREVIOUS_RELEASE["sqlite"])
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        postgres_url = server.create_database()
        request.addfinalizer(lambda: server.drop_database(postgres_url))
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(PREVIOUS_RELEASE["postgres"])

    async with open_audit_store(data_dir=tmp_path, postgres_url=postgres_url) as store:
        assert (await store.spent("acme", T0.date())).input_tokens == 40
        assert await store.record(_event(_call(2, 0.5), uuid.uuid4(), T0, "acme"))
        assert (await store.spent("acme", T0.date())).input_tokens == 42
