"""Connections of the SQLite stores."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite


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
