"""Checkpoints and outbox marks in one SQLite file, committed in groups."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from langgraph.checkpoint.base import empty_checkpoint
from pactmesh_contracts.envelope import Principal, new_event
from pactmesh_contracts.events import RequestRouted, ToolCallCompleted, ToolCallRequested
from pactmesh_kit.auth import load_access_policy
from pactmesh_orchestrator.adapters.sqlite_store import GroupCommitter, open_sqlite_store
from pactmesh_orchestrator.domain.engine import Engine
from pactmesh_orchestrator.domain.workflows import build_graphs
from pactmesh_orchestrator.testing import CollectingPublisher
from pactmesh_workflows.gates import GatePolicy


def _config(thread: str) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": ""}}


async def test_concurrent_checkpoints_share_commits_and_are_durable_on_return(
    tmp_path: Path,
) -> None:
    path = tmp_path / "checkpoints.sqlite3"
    commits = 0
    original = GroupCommitter._run_group

    def counting(self: GroupCommitter, group: Any) -> Any:
        nonlocal commits
        commits += 1
        return original(self, group)

    GroupCommitter._run_group = counting  # type: ignore[method-assign]
    try:
        async with open_sqlite_store(path) as (saver, _outbox):
            commits = 0
            threads = [f"wf-{n}" for n in range(200)]
            saved = await asyncio.gather(
                *(saver.aput(_config(t), empty_checkpoint(), {}, {}) for t in threads)
            )
            # Each call returned after its commit: another connection sees every row.
            with sqlite3.connect(path) as other:
                [(rows,)] = other.execute("SELECT count(*) FROM checkpoints").fetchall()
            assert rows == 200
            assert commits < 200, "concurrent writes share commits"
            assert [c["configurable"]["thread_id"] for c in saved] == threads
    finally:
        GroupCommitter._run_group = original  # type: ignore[method-assign]


async def test_a_failing_call_fails_alone(tmp_path: Path) -> None:
    async with open_sqlite_store(tmp_path / "c.sqlite3") as (saver, outbox):

        def broken() -> None:
            raise sqlite3.OperationalError("no such table: nowhere")

        committer = saver._committer
        results = await asyncio.gather(
            committer.run(broken), outbox.mark("wf-1", "cp-1"), return_exceptions=True
        )
        assert isinstance(results[0], sqlite3.OperationalError)
        assert results[1] is None
        assert await outbox.published("wf-1", "cp-1")


async def test_a_workflow_resumes_from_the_file_in_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints.sqlite3"
    routed = new_event(
        RequestRouted(
            workflow="support-triage",
            confidence=0.9,
            reason="test",
            text="How do I reset my password?",
        ),
        workflow_id=uuid.uuid4(),
        tenant="acme",
        principal=Principal(subject="u"),
    )
    first = CollectingPublisher()
    async with open_sqlite_store(path) as (saver, outbox):
        await _engine(saver, outbox, first).start(routed)
    [call] = [e.payload for e in first.events if isinstance(e.payload, ToolCallRequested)]

    second = CollectingPublisher()
    hits = {"hits": [{"id": "kb-1", "title": "Reset", "answer": "Settings", "score": 0.9}]}
    async with open_sqlite_store(path) as (saver, outbox):
        await _engine(saver, outbox, second).resume(
            routed.follow(
                ToolCallCompleted(call_id=call.call_id, tool=call.tool, result=hits, duration_ms=1)
            )
        )
    assert any(e.type == "workflow.completed.v1" for e in second.events)


def _engine(saver: Any, outbox: Any, publisher: CollectingPublisher) -> Engine:
    graphs = build_graphs(checkpointer=saver, gates=GatePolicy.load())
    return Engine(
        graphs=graphs,
        checkpointer=saver,
        publisher=publisher,
        outbox=outbox,
        reviewers=load_access_policy(),
        tool_timeout_s=5,
    )
