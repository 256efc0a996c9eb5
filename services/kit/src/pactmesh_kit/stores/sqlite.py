"""Connections of the SQLite stores."""

from __future__ import annotations

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
