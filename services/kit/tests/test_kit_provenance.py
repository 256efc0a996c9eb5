"""Accepted requests: what an event must act for, waited for when it outruns its record."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from pactmesh_contracts.envelope import Envelope, Principal, new_event
from pactmesh_contracts.events import Channel, RequestAccepted
from pactmesh_kit.errors import NotReady
from pactmesh_kit.provenance import DEFAULT_RETENTION_S, Provenance

ALICE = Principal(subject="alice", roles=("requester",), scopes=("workflow:refund",))


def _accepted(tenant: str = "acme", principal: Principal = ALICE) -> Envelope[Any]:
    return new_event(
        RequestAccepted(text="refund order 4411", channel=Channel.HTTP),
        workflow_id=uuid.uuid4(),
        tenant=tenant,
        principal=principal,
    )


async def test_an_event_of_an_accepted_request_acts_for_it(tmp_path: Path) -> None:
    provenance = Provenance(wait_s=0.1)
    async with provenance.opened(tmp_path / "p.sqlite3"):
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


async def test_an_event_outrunning_its_request_waits_for_it(tmp_path: Path) -> None:
    provenance = Provenance(wait_s=5)
    async with provenance.opened(tmp_path / "p.sqlite3"):
        request = _accepted()
        waiting = asyncio.create_task(provenance.refusal(request))
        await asyncio.sleep(0.05)
        assert not waiting.done()

        await provenance.record(request)

        async with asyncio.timeout(1):
            assert await waiting is None


async def test_an_event_of_no_accepted_request_is_refused_after_the_wait(tmp_path: Path) -> None:
    provenance = Provenance(wait_s=0.2)
    async with provenance.opened(tmp_path / "p.sqlite3"):
        loop = asyncio.get_running_loop()
        started = loop.time()
        refusal = await provenance.refusal(_accepted())
        assert refusal is not None
        assert refusal.startswith("the mesh accepted no request")
        assert loop.time() - started >= 0.2


async def test_records_are_pruned_after_their_retention(tmp_path: Path) -> None:
    now = [1_000_000.0]
    provenance = Provenance(wait_s=0, clock=lambda: now[0])
    async with provenance.opened(tmp_path / "p.sqlite3") as requests:
        old = _accepted()
        await provenance.record(old)
        now[0] += DEFAULT_RETENTION_S + 1
        assert await requests.prune(now=now[0]) == 1
        assert await requests.get(old.workflow_id) is None


async def test_checking_outside_its_lifespan_is_not_ready() -> None:
    with pytest.raises(NotReady):
        await Provenance().refusal(_accepted())
