"""The SQLite request store: idempotent writes and an ordered history."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pactmesh_contracts.events import Channel, RequestStatus
from pactmesh_intake.adapters.sqlite_store import SqliteRequestStore, open_store
from pactmesh_intake.domain.requests import Transition

T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteRequestStore]:
    async with open_store(tmp_path / "db" / "intake.sqlite3") as opened:
        yield opened


@pytest.fixture
async def request_id(store: SqliteRequestStore) -> uuid.UUID:
    rid = uuid.uuid4()
    assert await store.create(request_id=rid, tenant="acme", channel=Channel.HTTP, at=T0)
    return rid


def _transition(
    request_id: uuid.UUID, status: RequestStatus, *, seconds: int, workflow: str | None = None
) -> Transition:
    return Transition(
        event_id=uuid.uuid4(),
        request_id=request_id,
        status=status,
        service="test",
        detail=status.value,
        workflow=workflow,
        at=T0 + timedelta(seconds=seconds),
    )


async def test_create_is_idempotent(store: SqliteRequestStore, request_id: uuid.UUID) -> None:
    again = await store.create(
        request_id=request_id, tenant="other", channel=Channel.KAFKA, at=T0 + timedelta(hours=1)
    )
    assert again is False
    view = await store.get(request_id)
    assert view is not None
    assert (view.tenant, view.channel, view.status) == (
        "acme",
        Channel.HTTP,
        RequestStatus.ACCEPTED,
    )
    assert [h.status for h in view.history] == [RequestStatus.ACCEPTED]
    assert view.created_at == T0


async def test_record_is_idempotent_per_event_id(
    store: SqliteRequestStore, request_id: uuid.UUID
) -> None:
    routed = _transition(request_id, RequestStatus.ROUTED, seconds=1, workflow="refund")
    assert await store.record(routed) is True
    assert await store.record(routed) is False
    view = await store.get(request_id)
    assert view is not None
    assert [h.status for h in view.history] == [RequestStatus.ACCEPTED, RequestStatus.ROUTED]
    assert view.status is RequestStatus.ROUTED
    assert view.workflow == "refund"


async def test_history_is_ordered_by_time_whatever_the_arrival_order(
    store: SqliteRequestStore, request_id: uuid.UUID
) -> None:
    await store.record(_transition(request_id, RequestStatus.WAITING_FOR_TOOL, seconds=3))
    await store.record(_transition(request_id, RequestStatus.ROUTED, seconds=1))
    await store.record(_transition(request_id, RequestStatus.RUNNING, seconds=2))
    view = await store.get(request_id)
    assert view is not None
    assert [h.status for h in view.history] == [
        RequestStatus.ACCEPTED,
        RequestStatus.ROUTED,
        RequestStatus.RUNNING,
        RequestStatus.WAITING_FOR_TOOL,
    ]
    assert [h.service for h in view.history] == ["intake", "test", "test", "test"]


async def test_a_finished_request_keeps_its_status_and_workflow(
    store: SqliteRequestStore, request_id: uuid.UUID
) -> None:
    await store.record(_transition(request_id, RequestStatus.ROUTED, seconds=1, workflow="refund"))
    await store.record(_transition(request_id, RequestStatus.COMPLETED, seconds=2))
    await store.record(_transition(request_id, RequestStatus.RUNNING, seconds=3))
    assert await store.status(request_id) is RequestStatus.COMPLETED
    await store.record(_transition(request_id, RequestStatus.DELIVERED, seconds=4))
    view = await store.get(request_id)
    assert view is not None
    assert (view.status, view.workflow) == (RequestStatus.DELIVERED, "refund")
    assert view.updated_at == T0 + timedelta(seconds=4)


async def test_forget_removes_the_request_and_its_history(
    store: SqliteRequestStore, request_id: uuid.UUID
) -> None:
    other = uuid.uuid4()
    await store.create(request_id=other, tenant="acme", channel=Channel.KAFKA, at=T0)
    await store.record(_transition(request_id, RequestStatus.ROUTED, seconds=1))

    await store.forget(request_id)

    assert await store.get(request_id) is None
    assert await store.status(request_id) is None
    assert await store.get(other) is not None
    # a forgotten id can be created afresh, with no stale history
    assert await store.create(request_id=request_id, tenant="acme", channel=Channel.HTTP, at=T0)
    view = await store.get(request_id)
    assert view is not None
    assert [h.status for h in view.history] == [RequestStatus.ACCEPTED]


async def test_unknown_request(store: SqliteRequestStore) -> None:
    assert await store.get(uuid.uuid4()) is None
    assert await store.status(uuid.uuid4()) is None


async def test_data_survives_reopening(tmp_path: Path) -> None:
    rid = uuid.uuid4()
    async with open_store(tmp_path / "intake.sqlite3") as first:
        await first.create(request_id=rid, tenant="acme", channel=Channel.HTTP, at=T0)
    async with open_store(tmp_path / "intake.sqlite3") as second:
        assert await second.status(rid) is RequestStatus.ACCEPTED
