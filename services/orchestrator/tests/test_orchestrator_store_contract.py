"""One suite for both stores of workflow state: the SQLite store (the group-commit
checkpointer and its outbox in one file) and the Postgres store (LangGraph's Postgres
checkpointer and the outbox table), each opened as the orchestrator opens it.

The checkpointers pass LangGraph's checkpoint conformance suite
(langgraph-checkpoint-conformance), one test per capability; the capabilities a store
does not implement are declared with the suite's ``skip_capabilities``, each with its
reason, and a test checks that they really are missing (so an implementation added
later is noticed and tested). On Postgres the tests of this module share one database,
so every test uses workflow ids of its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability, DetectedCapabilities
from langgraph.checkpoint.conformance.initializer import RegisteredCheckpointer
from pactmesh_contracts.envelope import Principal, new_event
from pactmesh_contracts.events import RequestRouted, ToolCallCompleted, ToolCallRequested
from pactmesh_contracts.topics import REQUESTS_ROUTED
from pactmesh_harness.postgres import PostgresServer
from pactmesh_harness.pytest_plugin import StoreBackend
from pactmesh_kit.auth import load_access_policy
from pactmesh_orchestrator.adapters.outbox import PostgresOutbox
from pactmesh_orchestrator.adapters.persistence import Persistence, open_persistence
from pactmesh_orchestrator.domain.engine import Engine
from pactmesh_orchestrator.domain.timers import Sweeper, TimerSettings, Wake, Wakeups
from pactmesh_orchestrator.domain.workflows import build_graphs
from pactmesh_orchestrator.settings import Settings
from pactmesh_orchestrator.testing import CollectingPublisher, FakeClock
from pactmesh_workflows.gates import GatePolicy
from pydantic import JsonValue

_NEVER_CALLED = (
    "the orchestrator never calls it: a workflow's checkpoints are kept whole (its run view"
    " reads them), never forked, copied to another thread or pruned"
)
_NOT_IN_SQLITE = f"not in LangGraph's SqliteSaver, whose SQL this saver runs; {_NEVER_CALLED}"
_NOT_IN_POSTGRES = f"not in LangGraph's AsyncPostgresSaver; {_NEVER_CALLED}"
UNSUPPORTED: dict[str, dict[str, str]] = {
    "sqlite": {
        "delete_for_runs": _NOT_IN_SQLITE,
        "copy_thread": _NOT_IN_SQLITE,
        "prune": _NOT_IN_SQLITE,
    },
    "postgres": {"delete_for_runs": _NOT_IN_POSTGRES, "copy_thread": _NOT_IN_POSTGRES},
}
"""Per store, the conformance capabilities it deliberately does not support, and why."""

CASES = [
    (kind, capability.value)
    for kind in ("sqlite", "postgres")
    for capability in Capability
    if capability.value not in UNSUPPORTED[kind]
]


@pytest.fixture
def settings(store_backend: StoreBackend) -> Settings:
    """The orchestrator's settings selecting the store under test."""
    return Settings(**store_backend.settings())


def _registered(
    settings: Settings, kind: str, saver: BaseCheckpointSaver[Any] | None = None
) -> RegisteredCheckpointer:
    """The store's checkpointer as the conformance suite takes it: a fresh store per
    capability suite, or ``saver`` every time when given."""

    @checkpointer_test(name=f"pactmesh-{kind}", skip_capabilities=set(UNSUPPORTED[kind]))
    async def factory() -> AsyncIterator[BaseCheckpointSaver[Any]]:
        if saver is not None:
            yield saver
            return
        async with open_persistence(settings) as store:
            yield store.checkpointer

    return factory


@pytest.mark.parametrize(("store_backend", "capability"), CASES, indirect=["store_backend"])
async def test_langgraph_checkpoint_conformance(
    settings: Settings, store_backend: StoreBackend, capability: str
) -> None:
    report = await validate(_registered(settings, store_backend.kind), capabilities={capability})
    result = report.results[capability]
    assert result.detected, f"{capability} is not implemented; declare it in UNSUPPORTED"
    assert result.failures == []
    assert result.passed
    assert result.tests_passed > 0


async def test_unsupported_capabilities_are_really_missing(
    settings: Settings, store_backend: StoreBackend
) -> None:
    async with open_persistence(settings) as store:
        detected = DetectedCapabilities.from_instance(store.checkpointer)
    assert {c.value for c in detected.missing} == set(UNSUPPORTED[store_backend.kind])


async def test_conformance_with_every_suite_at_once_on_one_store(
    settings: Settings, store_backend: StoreBackend
) -> None:
    """Calls of different tests interleave, and on SQLite share commit groups."""
    async with open_persistence(settings) as store:
        registered = _registered(settings, store_backend.kind, store.checkpointer)
        capabilities = [c for kind, c in CASES if kind == store_backend.kind]
        reports = await asyncio.gather(
            *(validate(registered, capabilities={c}) for c in capabilities)
        )
    failures = [f for r in reports for result in r.results.values() for f in result.failures]
    assert failures == []
    assert all(r.results[c].passed for r, c in zip(reports, capabilities, strict=True))


def _config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


@pytest.fixture
def wf() -> str:
    """A workflow id of this test's own (the Postgres database is the module's)."""
    return f"wf-{uuid.uuid4().hex[:12]}"


async def test_marks_are_per_thread_and_checkpoint_and_survive_reopening(
    settings: Settings, wf: str
) -> None:
    other = f"{wf}-other"
    async with open_persistence(settings) as store:
        outbox = store.outbox
        assert not await outbox.published(wf, "cp-1")
        await outbox.mark(wf, "cp-1")
        await outbox.mark(wf, "cp-1")  # idempotent
        assert await outbox.published(wf, "cp-1")
        assert not await outbox.published(wf, "cp-2")
        assert not await outbox.published(other, "cp-1")
    async with open_persistence(settings) as reopened:
        assert await reopened.outbox.published(wf, "cp-1")


async def test_marks_and_checkpoints_survive_reopening(settings: Settings, wf: str) -> None:
    async with open_persistence(settings) as store:
        saver, outbox = store.checkpointer, store.outbox
        config = await saver.aput(_config(wf), empty_checkpoint(), {}, {})
        await saver.aput_writes(config, [("x", 1)], task_id="t1")
        await outbox.mark(wf, "cp-1")
    async with open_persistence(settings) as store:
        saver, outbox = store.checkpointer, store.outbox
        found = await saver.aget_tuple(_config(wf))
        assert found is not None
        assert [(w[1], w[2]) for w in found.pending_writes or []] == [("x", 1)]
        assert [t.config async for t in saver.alist(_config(wf))] == [found.config]
        assert await outbox.published(wf, "cp-1")
        assert not await outbox.published(wf, "cp-2")


async def test_the_store_opens_and_works_with_a_pool_of_one_connection(
    settings: Settings, wf: str
) -> None:
    """Set-up once took a second connection while holding the first (Postgres)."""
    one = settings.model_copy(update={"postgres_pool_size": 1})
    async with asyncio.timeout(20), open_persistence(one) as store:
        config = await store.checkpointer.aput(_config(wf), empty_checkpoint(), {}, {})
        await store.outbox.mark(wf, config["configurable"]["checkpoint_id"])
        assert await store.checkpointer.aget_tuple(_config(wf)) is not None


async def test_marks_of_the_previous_release_are_kept_on_sqlite(tmp_path: Path) -> None:
    """Its file named the marks table ``published`` and created it at start-up."""
    with sqlite3.connect(tmp_path / "orchestrator-checkpoints.sqlite3") as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS published (thread_id TEXT NOT NULL,"
            " checkpoint_id TEXT NOT NULL, PRIMARY KEY (thread_id, checkpoint_id))"
        )
        conn.execute("INSERT INTO published VALUES ('wf-old', 'cp-1')")

    async with open_persistence(Settings(data_dir=tmp_path)) as store:
        assert await store.outbox.published("wf-old", "cp-1")
        assert not await store.outbox.published("wf-old", "cp-2")


@pytest.mark.postgres
async def test_marks_of_the_previous_release_are_kept_on_postgres(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """Its database named the marks table ``pactmesh_outbox``."""
    with postgres_server.fresh_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS pactmesh_outbox (thread_id TEXT NOT NULL,"
                " checkpoint_id TEXT NOT NULL, PRIMARY KEY (thread_id, checkpoint_id))"
            )
            conn.execute("INSERT INTO pactmesh_outbox VALUES ('wf-old', 'cp-1')")

        async with open_persistence(Settings(data_dir=tmp_path, postgres_url=url)) as store:
            assert await store.outbox.published("wf-old", "cp-1")
            assert not await store.outbox.published("wf-old", "cp-2")


async def test_wakeups_are_claimed_once_when_due_and_again_after_their_lease(
    settings: Settings, wf: str
) -> None:
    later = f"{wf}-later"
    async with open_persistence(settings) as store:
        wakeups = store.wakeups
        await wakeups.set(wf, 100.0, Wake.STALL)
        await wakeups.set(wf, 110.0, Wake.DEADLINE, "cp-1|i-1")  # replaces the run's row
        await wakeups.set(later, 500.0, Wake.EXPIRE)
        assert await _claimed(wakeups, 109.0) == []
        assert await _claimed(wakeups, 111.0) == [(wf, Wake.DEADLINE)]
        assert await _claimed(wakeups, 111.0) == [], "leased until 211"
    async with open_persistence(settings) as reopened:
        [again] = [
            d for d in await reopened.wakeups.claim(212.0, 300.0, 1_000) if d.thread_id == wf
        ]
        assert (again.wake, again.pause) == (Wake.DEADLINE, "cp-1|i-1")
        await reopened.wakeups.clear(wf)
        assert await _claimed(reopened.wakeups, 10_000.0) == [(later, Wake.EXPIRE)]


async def _claimed(wakeups: Wakeups, now: float) -> list[tuple[str, Wake]]:
    """The rows due at ``now`` (mine: the Postgres database is the module's)."""
    claimed = await wakeups.claim(now, now + 100.0, 1_000)
    return sorted((row.thread_id, row.wake) for row in claimed if row.thread_id.startswith("wf-"))


@pytest.mark.postgres
async def test_instances_sweeping_at_once_claim_each_row_once(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    with postgres_server.fresh_database() as url:
        settings = Settings(data_dir=tmp_path, postgres_url=url)
        async with open_persistence(settings) as one, open_persistence(settings) as two:
            threads = [f"wf-{n:04d}" for n in range(300)]
            for thread in threads:
                await one.wakeups.set(thread, 1.0, Wake.STALL)
            claims = await asyncio.gather(
                *(store.wakeups.claim(2.0, 100.0, 20) for _ in range(10) for store in (one, two))
            )
        claimed = [row.thread_id for claim in claims for row in claim]
        assert len(claimed) == len(set(claimed)) == len(threads)


async def test_a_finished_run_past_its_ttl_leaves_nothing_behind(settings: Settings) -> None:
    """The engine on the real store: checkpoints, writes, marks and row all deleted."""
    publisher = CollectingPublisher()
    clock = FakeClock()
    async with open_persistence(settings) as store:
        graphs = build_graphs(checkpointer=store.checkpointer, gates=GatePolicy.load())
        engine = Engine(
            graphs=graphs,
            checkpointer=store.checkpointer,
            publisher=publisher,
            outbox=store.outbox,
            reviewers=load_access_policy(),
            tool_timeout_s=5,
            clock=clock,
            wakeups=store.wakeups,
            timers=TimerSettings(finished_ttl_s=60.0),
        )
        sweeper = Sweeper(engine, store.wakeups, lease_s=30.0, clock=clock)
        routed = _support_request()
        await engine.start(routed)
        [call] = [e.payload for e in publisher.events if isinstance(e.payload, ToolCallRequested)]
        hits: dict[str, JsonValue] = {
            "hits": [{"id": "kb-1", "title": "t", "answer": "a", "score": 0.5}]
        }
        await engine.resume(
            routed.follow(
                ToolCallCompleted(
                    call_id=call.call_id, tool="kb.search", result=hits, duration_ms=1
                )
            )
        )
        thread = str(routed.workflow_id)
        assert [t async for t in store.checkpointer.alist(_config(thread))] != []

        clock.advance(61.0)
        assert (await sweeper.sweep()).get("expired") == 1

        assert [t async for t in store.checkpointer.alist(_config(thread))] == []
        assert await engine.state(routed.workflow_id) is None
        assert await _marks(store, thread) == 0
        assert await _claimed(store.wakeups, clock().timestamp() + 1e9) == []


async def _marks(store: Persistence, thread: str) -> int:
    """The thread's outbox marks (read as each store's own outbox reads them)."""
    if isinstance(store.outbox, PostgresOutbox):
        async with store.outbox._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) AS n FROM outbox_marks WHERE thread_id = %s", (thread,)
            )
            row = await cursor.fetchone()
            return int(row["n"])
    committer = store.outbox._committer  # type: ignore[attr-defined]
    query = "SELECT count(*) FROM outbox_marks WHERE thread_id = ?"
    return int(await committer.run(lambda: committer.conn.execute(query, (thread,)).fetchone()[0]))


def _support_request() -> Any:
    event = new_event(
        RequestRouted(workflow="support-triage", confidence=0.9, reason="t", text="Reset password"),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="user-1"),
    )
    return REQUESTS_ROUTED.adapter.validate_json(event.model_dump_json())
