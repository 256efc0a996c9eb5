"""The SQLite outbox marker."""

from __future__ import annotations

from pathlib import Path

from pactmesh_orchestrator.adapters.outbox import open_outbox


async def test_marks_are_per_thread_and_checkpoint_and_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    async with open_outbox(path) as outbox:
        assert not await outbox.published("wf-1", "cp-1")
        await outbox.mark("wf-1", "cp-1")
        await outbox.mark("wf-1", "cp-1")  # idempotent
        assert await outbox.published("wf-1", "cp-1")
        assert not await outbox.published("wf-1", "cp-2")
        assert not await outbox.published("wf-2", "cp-1")
    async with open_outbox(path) as reopened:
        assert await reopened.published("wf-1", "cp-1")
