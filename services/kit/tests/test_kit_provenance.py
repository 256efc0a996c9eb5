"""Accepted requests: what an event must act for, waited for when it outruns its record;
on both stores (SQLite, and Postgres, which several instances share), and in a file
written before the kit used Alembic."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import Channel, RequestAccepted
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_kit.errors import NotReady
from pactmesh_kit.provenance import DEFAULT_RETENTION_S, Provenance
from pactmesh_kit.stores import StoreSettings
from pactmesh_kit.stores.accepted import FILE

ALICE = Principal(subject="alice", roles=("requester",), scopes=("workflow:refund",))


def _accepted(tenant: str = "acme", principal: Principal = ALICE) -> Envelope[Any]:
    return new_event(
        RequestAccepted(text="refund order 4411", channel=Channel.HTTP),
        workflow_id=uuid.uuid4(),
        tenant=tenant,
        principal=principal,
    )


@pytest.fixture
def settings(store_backend: StoreBackend) -> StoreSettings:
    """Settings selecting the store under test."""
    return StoreSettings(**store_backend.settings())


async def test_an_event_of_an_accepted_request_acts_for_it(settings: StoreSettings) -> None:
    provenance = Provenance(wait_s=0.1)
    async with provenance.opened(settings):
        request = _accepted()
        await provenance.record(request)
        await provenance.record(request.model_copy(update={"tenant": "globex"}))  # kept as first

        assert await provenance.refusal(request) is None
        assert "tenant 'globex'" in str(
            await provenance.refusal(request.model_copy(update={"tenant": "globex"}))
        )
        scoped = ALICE.model_copy(update={"scopes": ("workflow:refund", "workflow:procurement")})
        refusal = await provenance.refusal(request.model_copy(update={"principal": scoped}))
        assert refusal is not None
        assert "was accepted for 'alice' (roles ['requester'], scopes ['workflow:refund'])" in (
            refusal
        )


async def test_an_event_outrunning_its_request_waits_for_it(settings: StoreSettings) -> None:
    provenance = Provenance(wait_s=5)
    async with provenance.opened(settings):
        request = _accepted()
        waiting = asyncio.create_task(provenance.refusal(request))
        await asyncio.sleep(0.05)
        assert not waiting.done()

        await provenance.record(request)

        async with asyncio.timeout(1):
            assert await waiting is None


async def test_an_event_of_no_accepted_request_is_refused_after_the_wait(
    settings: StoreSettings,
) -> None:
    provenance = Provenance(wait_s=0.2)
    async with provenance.opened(settings):
        loop = asyncio.get_running_loop()
        started = loop.time()
        refusal = await provenance.refusal(_accepted())
        assert refusal is not None
        assert refusal.startswith("the mesh accepted no request")
        assert loop.time() - started >= 0.2


async def test_records_are_pruned_after_their_retention(settings: StoreSettings) -> None:
    now = [1_000_000.0]
    provenance = Provenance(wait_s=0, clock=lambda: now[0])
    async with provenance.opened(settings) as requests:
        old = _accepted()
        await provenance.record(old)
        now[0] += DEFAULT_RETENTION_S + 1
        assert await requests.prune(now=now[0]) == 1
        assert await requests.get(old.workflow_id) is None


async def test_checking_outside_its_lifespan_is_not_ready() -> None:
    with pytest.raises(NotReady):
        await Provenance().refusal(_accepted())


@pytest.mark.parametrize("store_backend", ["postgres"], indirect=True)
async def test_an_instance_sees_the_requests_another_instance_recorded(
    store_backend: StoreBackend,
) -> None:
    """Two instances in one consumer group: the one handed the event may not be the one
    that read its request (Postgres only: SQLite is one instance per data dir)."""
    a, b = Provenance(wait_s=0), Provenance(wait_s=5)
    first = StoreSettings(**store_backend.settings())
    second = first.model_copy(update={"data_dir": store_backend.data_dir / "b"})
    async with a.opened(first), b.opened(second):
        request = _accepted()
        waiting = asyncio.create_task(b.refusal(request))
        await asyncio.sleep(0.05)
        await a.record(request)

        async with asyncio.timeout(2):
            assert await waiting is None
        assert await b.refusal(request.model_copy(update={"tenant": "globex"})) is not None


def test_a_file_written_before_alembic_keeps_its_requests(tmp_path: Path) -> None:
    request = _accepted()
    with closing(sqlite3.connect(tmp_path / FILE)) as conn, conn:
        conn.execute(
            "CREATE TABLE accepted_requests (workflow_id TEXT PRIMARY KEY, tenant TEXT NOT"
            " NULL, principal TEXT NOT NULL, accepted_at REAL NOT NULL)"
        )
        conn.execute(
            "INSERT INTO accepted_requests VALUES (?, ?, ?, ?)",
            (str(request.workflow_id), "acme", ALICE.model_dump_json(), 1.0),
        )

    async def check() -> str | None:
        provenance = Provenance(wait_s=0, clock=lambda: 2.0)
        async with provenance.opened(StoreSettings(data_dir=tmp_path)):
            return await provenance.refusal(request)

    assert asyncio.run(check()) is None
