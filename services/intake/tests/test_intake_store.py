"""The SQLite request store: idempotent writes and an ordered history."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import pytest
from pactmesh_contracts.events import Channel, Outcome, RequestStatus
from pactmesh_intake.adapters.sqlite_store import (
    MIGRATIONS,
    SCHEMA_V1,
    SqliteRequestStore,
    open_store,
)
from pactmesh_intake.domain.requests import KeyHolder, ResultView, Submission, Transition

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


async def test_a_key_is_held_by_its_first_claim_until_it_expires(
    store: SqliteRequestStore,
) -> None:
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async def claim(rid: uuid.UUID, digest: str, at: datetime, tenant: str = "acme") -> KeyHolder:
        return await store.claim_key(
            tenant=tenant,
            key="k",
            request_id=rid,
            fingerprint=digest,
            at=at,
            expired_before=at - timedelta(hours=1),
        )

    held = await claim(first, "f1", T0)
    assert (held.request_id, held.fingerprint) == (first, "f1")
    held = await claim(second, "f2", T0 + timedelta(minutes=59))
    assert (held.request_id, held.fingerprint) == (first, "f1")
    held = await claim(second, "f2", T0, tenant="globex")
    assert held.request_id == second
    held = await claim(third, "f3", T0 + timedelta(hours=1, seconds=1))
    assert (held.request_id, held.fingerprint) == (third, "f3")

    await store.release_key(tenant="acme", key="k", request_id=first)  # not the holder
    held = await claim(first, "f1", T0 + timedelta(hours=1, seconds=2))
    assert held.request_id == third
    await store.release_key(tenant="acme", key="k", request_id=third)
    held = await claim(first, "f1", T0 + timedelta(hours=1, seconds=3))
    assert held.request_id == first


async def test_submission_and_result(store: SqliteRequestStore, request_id: uuid.UUID) -> None:
    assert await store.submission(request_id) == Submission(
        "acme", Channel.HTTP, RequestStatus.ACCEPTED, None
    )
    result = ResultView(
        workflow="refund", outcome=Outcome.SUCCEEDED, output={"refund_id": "R-1"}, at=T0
    )

    assert await store.record_result(request_id=request_id, result=result) is True
    assert await store.record_result(request_id=request_id, result=result) is False
    assert await store.record_result(request_id=uuid.uuid4(), result=result) is False

    assert await store.result(request_id) == result
    view = await store.get(request_id)
    assert view is not None
    assert view.result == result
    await store.forget(request_id)
    assert await store.result(request_id) is None


async def test_a_file_from_before_versioning_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "intake.sqlite3"
    rid = uuid.uuid4()
    async with aiosqlite.connect(path) as conn:  # the format intake wrote before v2
        await conn.executescript(SCHEMA_V1)
        await conn.execute(
            "INSERT INTO requests VALUES (?, 'acme', 'kafka', 'routed', 'refund', ?, ?)",
            (str(rid), T0.isoformat(), T0.isoformat()),
        )
        await conn.commit()

    async with open_store(path) as store:
        assert await store.submission(rid) == Submission(
            "acme", Channel.KAFKA, RequestStatus.ROUTED, None
        )
        assert await store.create(
            request_id=uuid.uuid4(), tenant="acme", channel=Channel.HTTP, at=T0, fingerprint="f"
        )
    async with aiosqlite.connect(path) as conn, conn.execute("PRAGMA user_version") as cursor:
        assert await cursor.fetchone() == (len(MIGRATIONS),)
    async with open_store(path) as reopened:  # already current: nothing to do
        assert await reopened.status(rid) is RequestStatus.ROUTED
