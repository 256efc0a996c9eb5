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


async def run_transaction(
    conn: aiosqlite.Connection, lock: asyncio.Lock, work: Callable[[sqlite3.Connection], T]
) -> T:
    """``work`` inside one ``BEGIN IMMEDIATE`` ... ``COMMIT``, run whole on ``conn``'s own
    thread: one hop to that thread instead of one per statement, holding ``lock`` (the
    store's, so that it never falls inside another coroutine's ``transaction``).

    Why: each awaited statement is a round trip to aiosqlite's thread (a queue, a
    future, a wake-up of the event loop), and intake's status transition, five
    statements in a transaction, cost some 0.7 ms of CPU that way (docs/benchmarks.md).
    aiosqlite has no public call for running a function on its thread; ``_execute`` is
    the one its own methods use. Atomic under cancellation: once queued, the function
    commits or rolls back on the thread whether or not its caller still waits.
    """

    def body() -> T:
        raw = conn._conn
        raw.execute("BEGIN IMMEDIATE")
        try:
            result = work(raw)
            raw.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.OperationalError):
                raw.execute("ROLLBACK")
            raise
        return result

    async with lock:
        return cast(T, await cast(Any, conn)._execute(body))
