"""Checkpoints and outbox marks in one SQLite file, written with group commit.

LangGraph's ``AsyncSqliteSaver`` commits (and fsyncs) after every write and crosses
to aiosqlite's thread for every cursor call: about a hundred thread hops and sixteen
commits per support-triage workflow. Here each checkpointer call is one hop to a single
writer thread, and the thread commits once for every call that queued up while it was
busy: with many workflows advancing at once, one fsync makes many checkpoints durable.

Durability is the same as committing each write: a call returns only after the commit
that includes its write, so nothing is published for a checkpoint that a crash could
still lose. ``synchronous`` is FULL (SQLite's default, set explicitly): the WAL is
fsynced at every commit.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.sqlite import SqliteSaver

from pactmesh_orchestrator.adapters.migrations import MIGRATIONS
from pactmesh_orchestrator.domain.timers import Due, Wake

UPSERT_WAKEUP = (
    "INSERT INTO wakeups (thread_id, due_at, wake, pause) VALUES (%s, %s, %s, %s) ON CONFLICT"
    " (thread_id) DO UPDATE SET due_at = excluded.due_at, wake = excluded.wake,"
    " pause = excluded.pause"
)
"""Create or replace a run's wake-up row (Postgres placeholders; SQLite's swap them)."""

logger = logging.getLogger(__name__)

T = TypeVar("T")
_Job = tuple["asyncio.Future[Any]", Callable[[], Any]]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class GroupCommitter:
    """A thread that owns one SQLite connection, runs calls in order and commits them
    in groups: every call queued while a group runs joins the next one."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._ready = threading.Event()
        self._conn: sqlite3.Connection | None = None
        self._thread = threading.Thread(target=self._work, name="sqlite-writer", daemon=True)
        self._thread.start()
        self._ready.wait()

    @property
    def conn(self) -> sqlite3.Connection:
        """The connection; use it only from calls run by ``run``."""
        assert self._conn is not None
        return self._conn

    async def run(self, call: Callable[[], T]) -> T:
        """Run ``call`` on the writer thread; return once what it wrote is committed."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((future, call))
        return await future

    def close(self) -> None:
        """Finish the queued calls, then close the connection."""
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        self._conn = sqlite3.connect(self._path, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")  # the default, said out loud
        self._ready.set()
        running = True
        while running:
            group = [self._jobs.get()]
            while True:
                try:
                    group.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            running = None not in group
            outcomes = self._run_group([job for job in group if job is not None])
            if outcomes:
                self._loop.call_soon_threadsafe(_settle, outcomes)
        self._conn.close()

    def _run_group(self, group: list[_Job]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        for future, call in group:
            try:
                outcomes.append((future, call(), None))
            except Exception as exc:  # handed to the caller, like a failed await
                outcomes.append((future, None, exc))
        if self.conn.in_transaction:
            try:
                self.conn.commit()
            except sqlite3.Error as exc:
                logger.exception("group commit failed; %d calls fail with it", len(outcomes))
                self.conn.rollback()
                outcomes = [(future, None, exc) for future, _, _ in outcomes]
        return outcomes


def _settle(outcomes: list[_Outcome]) -> None:
    for future, result, error in outcomes:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class GroupCommitSqliteSaver(SqliteSaver):
    """LangGraph's SQLite checkpointer (same tables, same SQL), run on a
    ``GroupCommitter``: one thread hop per call, one commit per group of calls."""

    def __init__(self, committer: GroupCommitter) -> None:
        super().__init__(committer.conn)
        self._committer = committer

    @property
    def committer(self) -> GroupCommitter:
        """The writer thread its calls run on (the outbox and wake-ups share it)."""
        return self._committer

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        """A cursor that leaves committing to the group commit."""
        with self.lock:
            self.setup()
            cur = self.conn.cursor()
            try:
                yield cur
            finally:
                cur.close()

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names (or the thread's latest), with pending writes."""
        return await self._committer.run(lambda: self.get_tuple(config))

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """The checkpoints matching the arguments, newest first."""
        found = await self._committer.run(
            lambda: list(self.list(config, filter=filter, before=before, limit=limit))
        )
        for item in found:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint; returns once it is committed."""
        return await self._committer.run(
            lambda: self.put(config, checkpoint, metadata, new_versions)
        )

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes against a checkpoint; returns once they are committed."""
        await self._committer.run(lambda: self.put_writes(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete a thread's checkpoints and writes."""
        await self._committer.run(lambda: self.delete_thread(thread_id))

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Any:
        """LangGraph's delta-channel history, read on the writer thread."""
        return await self._committer.run(
            lambda: self.get_delta_channel_history(config=config, channels=channels)
        )


class SqliteOutbox:
    """Outbox marks in the checkpoints' file: a mark commits in the same groups."""

    def __init__(self, committer: GroupCommitter) -> None:
        self._committer = committer

    async def published(self, thread_id: str, checkpoint_id: str) -> bool:
        """Whether the events of this checkpoint were already published."""
        query = "SELECT 1 FROM outbox_marks WHERE thread_id = ? AND checkpoint_id = ?"
        conn = self._committer.conn
        row = await self._committer.run(
            lambda: conn.execute(query, (thread_id, checkpoint_id)).fetchone()
        )
        return row is not None

    async def mark(self, thread_id: str, checkpoint_id: str) -> None:
        """Record that the events of this checkpoint are published (committed on return)."""
        query = "INSERT OR IGNORE INTO outbox_marks VALUES (?, ?)"
        conn = self._committer.conn
        await self._committer.run(lambda: conn.execute(query, (thread_id, checkpoint_id)))


class SqliteWakeups:
    """Wake-up rows in the checkpoints' file. One instance owns a data dir (its instance
    lock), so claiming needs no row locks."""

    def __init__(self, committer: GroupCommitter) -> None:
        self._committer = committer

    async def _execute(self, query: str, params: tuple[Any, ...]) -> list[Any]:
        conn = self._committer.conn
        return await self._committer.run(lambda: conn.execute(query, params).fetchall())

    async def set(self, thread_id: str, due_at: float, wake: Wake, pause: str = "") -> None:
        """Create or replace the run's row."""
        await self._execute(
            UPSERT_WAKEUP.replace("%s", "?"), (thread_id, due_at, wake.value, pause)
        )

    async def clear(self, thread_id: str) -> None:
        """Remove the run's row, if any."""
        await self._execute("DELETE FROM wakeups WHERE thread_id = ?", (thread_id,))

    async def claim(self, now: float, lease_until: float, limit: int) -> list[Due]:
        """Up to ``limit`` rows due at ``now``, each moved to ``lease_until``."""
        query = (
            "UPDATE wakeups SET due_at = ? WHERE thread_id IN (SELECT thread_id FROM wakeups"
            " WHERE due_at <= ? ORDER BY due_at LIMIT ?) RETURNING thread_id, wake, pause"
        )
        rows = await self._execute(query, (lease_until, now, limit))
        return [Due(thread_id, Wake(wake), pause) for thread_id, wake, pause in rows]

    async def purge(self, thread_id: str) -> bool:
        """Delete an expired run's outbox marks and row (False if it is not expired)."""

        def purge() -> bool:
            conn = self._committer.conn
            gone = conn.execute(
                "DELETE FROM wakeups WHERE thread_id = ? AND wake = ?",
                (thread_id, Wake.EXPIRE.value),
            ).rowcount
            if gone:
                conn.execute("DELETE FROM outbox_marks WHERE thread_id = ?", (thread_id,))
            return bool(gone)

        return await self._committer.run(purge)


@asynccontextmanager
async def open_sqlite_store(
    path: Path,
) -> AsyncIterator[tuple[GroupCommitSqliteSaver, SqliteOutbox]]:
    """The checkpointer and the outbox over the SQLite file at ``path`` (created if
    needed: the marks table by the orchestrator's Alembic revisions, the checkpoints'
    by LangGraph's ``setup``), closed (queued calls finished first) on exit."""
    await MIGRATIONS.upgrade(path)
    committer = GroupCommitter(path)
    try:
        saver = GroupCommitSqliteSaver(committer)
        outbox = SqliteOutbox(committer)
        await committer.run(saver.setup)
        yield saver, outbox
    finally:
        await asyncio.to_thread(committer.close)
