"""Connections of the SQLite stores."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

T = TypeVar("T")


@asynccontextmanager
async def connect(path: Path, *pragmas: str) -> AsyncIterator[aiosqlite.Connection]:
    """An autocommit connection to the file at ``path`` (a store groups statements with
    ``BEGIN IMMEDIATE`` where it must), WAL-journaled, with ``pragmas`` applied.

    Each pragma's cursor is closed at once: an open one keeps its statement active,
    and with it a lock that makes another connection's ``BEGIN IMMEDIATE`` wait.
    """
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        for pragma in ("journal_mode=WAL", *pragmas):
            async with conn.execute(f"PRAGMA {pragma}"):
                pass
        yield conn


@asynccontextmanager
async def transaction(
    conn: aiosqlite.Connection, lock: asyncio.Lock
) -> AsyncIterator[aiosqlite.Connection]:
    """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` on ``conn``, holding ``lock`` (the store's,
    so that no other coroutine's statement falls into it); rolled back on any exception.

    Cancellation included: aiosqlite queues each statement on the connection's thread
    as soon as it is awaited and runs them in order, so a task cancelled while awaiting
    ``BEGIN`` still began the transaction; the ``ROLLBACK`` queued after it ends it
    (and is harmless when nothing began). A ``COMMIT`` that fails (a full disk) leaves
    the transaction open: it is rolled back too, or its rows would ride along with the
    next caller's commit, or be lost by a later rollback after their writer was told
    they were stored (found by the fault suite's full disk).
    """
    async with lock:
        try:
            await conn.execute("BEGIN IMMEDIATE")
            yield conn
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.OperationalError):
                await conn.execute("ROLLBACK")
            raise


class GroupCommitter:
    """Short write transactions of concurrent coroutines on one aiosqlite connection,
    run together on its thread and committed together: one hop and one commit (one
    fsync with ``synchronous=FULL``) for every call waiting when a group starts.

    Each call is a function of the raw ``sqlite3`` connection, run inside a savepoint:
    one that raises is rolled back alone and its caller gets the exception; the group's
    COMMIT failing fails every call of the group. A caller returns once its writes are
    committed. Groups hold the store's ``lock``, so they never fall inside another
    coroutine's ``transaction``.

    Why by hand: each awaited statement is a round trip to aiosqlite's thread (a queue,
    a future, a wake-up of the event loop), and a status transition in intake, five
    statements in a transaction, cost some 0.7 ms of CPU that way (docs/benchmarks.md);
    neither aiosqlite nor the standard library groups commits. aiosqlite has no public
    call for running a function on its thread; ``_execute`` is the one its own methods
    use. The orchestrator's checkpointer does the same on a thread of its own.
    """

    def __init__(self, conn: aiosqlite.Connection, lock: asyncio.Lock, *, max_group: int = 512):
        self._conn = conn
        self._lock = lock
        self._max_group = max_group
        self._waiting: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.commits = 0
        """Groups committed so far (each one COMMIT)."""

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work``'s result once it is committed (its exception if it raised)."""
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append((work, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain(), name="sqlite-group-commit")
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            group = [(w, f) for w, f in self._waiting[: self._max_group] if not f.done()]
            del self._waiting[: self._max_group]
            if not group:
                continue
            try:
                async with self._lock:
                    raw = self._conn._conn
                    run = cast(Any, self._conn)._execute
                    outcomes = await run(_commit_group, raw, [work for work, _ in group])
                self.commits += 1
            except BaseException as exc:  # the COMMIT failed, or the connection is gone
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for (_, future), (result, error) in zip(group, outcomes, strict=True):
                if future.done():  # its caller was cancelled
                    continue
                if error is None:
                    future.set_result(result)
                else:
                    future.set_exception(error)


def _commit_group(
    raw: sqlite3.Connection, works: list[Callable[[sqlite3.Connection], Any]]
) -> list[tuple[Any, Exception | None]]:
    """On the connection's thread: each of ``works`` in a savepoint, then one COMMIT."""
    raw.execute("BEGIN IMMEDIATE")
    outcomes: list[tuple[Any, Exception | None]] = []
    try:
        for work in works:
            raw.execute("SAVEPOINT work")
            try:
                outcomes.append((work(raw), None))
            except Exception as exc:  # handed to its caller; the group goes on
                raw.execute("ROLLBACK TO work")
                outcomes.append((None, exc))
            raw.execute("RELEASE work")
        raw.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.OperationalError):
            raw.execute("ROLLBACK")
        raise
    return outcomes
