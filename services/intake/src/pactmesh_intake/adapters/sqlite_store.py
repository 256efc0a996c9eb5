"""The request store on SQLite (one file per intake instance)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import aiosqlite
from pactmesh_contracts.events import Channel, RequestStatus

from pactmesh_intake.domain.requests import HistoryEntry, RequestView, Transition, next_status

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    channel    TEXT NOT NULL,
    status     TEXT NOT NULL,
    workflow   TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    event_id   TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    service    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    at         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_request ON history (request_id, at);
"""


class SqliteRequestStore:
    """``RequestStore`` on one aiosqlite connection (WAL, so readers never block writes)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def create(
        self, *, request_id: uuid.UUID, tenant: str, channel: Channel, at: datetime
    ) -> bool:
        cursor = await self._conn.execute(
            "INSERT OR IGNORE INTO requests VALUES (?, ?, ?, ?, NULL, ?, ?)",
            (
                str(request_id),
                tenant,
                channel.value,
                RequestStatus.ACCEPTED.value,
                at.isoformat(),
                at.isoformat(),
            ),
        )
        created = cursor.rowcount == 1
        if created:
            await self._conn.execute(
                "INSERT OR IGNORE INTO history VALUES (?, ?, ?, ?, ?, ?)",
                (
                    f"created:{request_id}",
                    str(request_id),
                    RequestStatus.ACCEPTED.value,
                    "intake",
                    f"received over {channel.value}",
                    at.isoformat(),
                ),
            )
        await self._conn.commit()
        return created

    async def status(self, request_id: uuid.UUID) -> RequestStatus | None:
        async with self._conn.execute(
            "SELECT status FROM requests WHERE request_id = ?", (str(request_id),)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else RequestStatus(row[0])

    async def record(self, transition: Transition) -> bool:
        current = await self.status(transition.request_id)
        if current is None:
            return False  # not a request of this intake: nothing to report on
        cursor = await self._conn.execute(
            "INSERT OR IGNORE INTO history VALUES (?, ?, ?, ?, ?, ?)",
            (
                str(transition.event_id),
                str(transition.request_id),
                transition.status.value,
                transition.service,
                transition.detail,
                transition.at.isoformat(),
            ),
        )
        if cursor.rowcount != 1:
            await self._conn.commit()
            return False
        await self._conn.execute(
            "UPDATE requests SET status = ?, workflow = COALESCE(?, workflow), updated_at = ?"
            " WHERE request_id = ?",
            (
                next_status(current, transition.status).value,
                transition.workflow,
                transition.at.isoformat(),
                str(transition.request_id),
            ),
        )
        await self._conn.commit()
        return True

    async def get(self, request_id: uuid.UUID) -> RequestView | None:
        async with self._conn.execute(
            "SELECT tenant, channel, status, workflow, created_at, updated_at"
            " FROM requests WHERE request_id = ?",
            (str(request_id),),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        async with self._conn.execute(
            "SELECT status, service, detail, at FROM history WHERE request_id = ?"
            " ORDER BY at, rowid",
            (str(request_id),),
        ) as cursor:
            history = [
                HistoryEntry(
                    status=RequestStatus(s), service=svc, detail=d, at=datetime.fromisoformat(a)
                )
                for s, svc, d, a in await cursor.fetchall()
            ]
        tenant, channel, status, workflow, created, updated = row
        return RequestView(
            request_id=request_id,
            tenant=tenant,
            channel=Channel(channel),
            status=RequestStatus(status),
            workflow=workflow,
            created_at=datetime.fromisoformat(created),
            updated_at=datetime.fromisoformat(updated),
            history=history,
        )

    async def forget(self, request_id: uuid.UUID) -> None:
        await self._conn.execute("DELETE FROM history WHERE request_id = ?", (str(request_id),))
        await self._conn.execute("DELETE FROM requests WHERE request_id = ?", (str(request_id),))
        await self._conn.commit()


@asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[SqliteRequestStore]:
    """Open (creating if needed) the store at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.executescript(SCHEMA)
        await conn.commit()
        yield SqliteRequestStore(conn)
