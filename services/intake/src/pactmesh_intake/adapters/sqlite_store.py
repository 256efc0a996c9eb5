"""The request store on SQLite (one file per intake instance).

The file's format is versioned with ``PRAGMA user_version``; opening an older file
migrates it in place (:data:`MIGRATIONS`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
from pactmesh_contracts.events import Channel, RequestStatus

from pactmesh_intake.domain.requests import (
    HistoryEntry,
    KeyHolder,
    RequestView,
    ResultView,
    Submission,
    Transition,
    next_status,
)

SCHEMA_V1 = """
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

MIGRATIONS: tuple[str, ...] = (
    SCHEMA_V1,
    # v2: what each request was (its fingerprint), clients' idempotency keys, results.
    """
    ALTER TABLE requests ADD COLUMN fingerprint TEXT;
    CREATE TABLE idempotency_keys (
        tenant      TEXT NOT NULL,
        key         TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (tenant, key)
    );
    CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
    CREATE TABLE results (
        request_id TEXT PRIMARY KEY,
        result     TEXT NOT NULL
    );
    """,
)
"""Schema changes in order; a file at ``user_version`` N has had the first N applied."""


class SqliteRequestStore:
    """``RequestStore`` on one aiosqlite connection (WAL, so readers never block writes)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def create(
        self,
        *,
        request_id: uuid.UUID,
        tenant: str,
        channel: Channel,
        at: datetime,
        fingerprint: str | None = None,
    ) -> bool:
        cursor = await self._conn.execute(
            "INSERT OR IGNORE INTO requests"
            " (request_id, tenant, channel, status, workflow, created_at, updated_at, fingerprint)"
            " VALUES (?, ?, ?, ?, NULL, ?, ?, ?)",
            (
                str(request_id),
                tenant,
                channel.value,
                RequestStatus.ACCEPTED.value,
                at.isoformat(),
                at.isoformat(),
                fingerprint,
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

    async def submission(self, request_id: uuid.UUID) -> Submission | None:
        async with self._conn.execute(
            "SELECT tenant, channel, status, fingerprint FROM requests WHERE request_id = ?",
            (str(request_id),),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        tenant, channel, status, digest = row
        return Submission(tenant, Channel(channel), RequestStatus(status), digest)

    async def claim_key(
        self,
        *,
        tenant: str,
        key: str,
        request_id: uuid.UUID,
        fingerprint: str,
        at: datetime,
        expired_before: datetime,
    ) -> KeyHolder:
        # Expired bindings go first (an index range, so cheap), then the primary key
        # decides: INSERT OR IGNORE is one atomic statement, never a check-then-insert
        # that two concurrent submissions could both pass.
        await self._conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < ?", (_instant(expired_before),)
        )
        await self._conn.execute(
            "INSERT OR IGNORE INTO idempotency_keys VALUES (?, ?, ?, ?, ?)",
            (tenant, key, str(request_id), fingerprint, _instant(at)),
        )
        await self._conn.commit()
        async with self._conn.execute(
            "SELECT request_id, fingerprint FROM idempotency_keys WHERE tenant = ? AND key = ?",
            (tenant, key),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None, "a key just claimed is there until its retention passes"
        return KeyHolder(uuid.UUID(row[0]), row[1])

    async def release_key(self, *, tenant: str, key: str, request_id: uuid.UUID) -> None:
        await self._conn.execute(
            "DELETE FROM idempotency_keys WHERE tenant = ? AND key = ? AND request_id = ?",
            (tenant, key, str(request_id)),
        )
        await self._conn.commit()

    async def record_result(self, *, request_id: uuid.UUID, result: ResultView) -> bool:
        if await self.status(request_id) is None:
            return False  # not a request of this intake
        cursor = await self._conn.execute(
            "INSERT OR IGNORE INTO results VALUES (?, ?)",
            (str(request_id), result.model_dump_json()),
        )
        await self._conn.commit()
        return cursor.rowcount == 1

    async def result(self, request_id: uuid.UUID) -> ResultView | None:
        async with self._conn.execute(
            "SELECT result FROM results WHERE request_id = ?", (str(request_id),)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else ResultView.model_validate(json.loads(row[0]))

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
            result=await self.result(request_id),
        )

    async def forget(self, request_id: uuid.UUID) -> None:
        await self._conn.execute("DELETE FROM history WHERE request_id = ?", (str(request_id),))
        await self._conn.execute("DELETE FROM results WHERE request_id = ?", (str(request_id),))
        await self._conn.execute("DELETE FROM requests WHERE request_id = ?", (str(request_id),))
        await self._conn.commit()


def _instant(at: datetime) -> str:
    """A UTC time as text that sorts in time order (fixed width, microseconds)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


@asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[SqliteRequestStore]:
    """Open (creating if needed) the store at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await migrate(conn)
        yield SqliteRequestStore(conn)


async def migrate(conn: aiosqlite.Connection) -> int:
    """Bring the file to the latest format; returns the version it was at."""
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    found = int(row[0]) if row else 0
    if found == 0:
        # Files from before versioning hold the v1 tables already, or nothing yet.
        async with conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'requests'"
        ) as cursor:
            found = 1 if await cursor.fetchone() else 0
    for version in range(found, len(MIGRATIONS)):
        # executescript commits first; each step and its version bump commit together.
        await conn.executescript(
            f"BEGIN; {MIGRATIONS[version]}; PRAGMA user_version = {version + 1}; COMMIT;"
        )
    return found
