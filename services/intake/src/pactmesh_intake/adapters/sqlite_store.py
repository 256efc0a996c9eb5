"""The request store on SQLite (one file, one intake instance).

The schema is Alembic's (``migrations``), applied when the store opens. The connection
runs in autocommit mode: one-statement writes commit alone, and the few writes of
several statements hold the store's lock from ``BEGIN IMMEDIATE`` to ``COMMIT``, so no
other coroutine's statement falls into them. Status transitions, the busiest write (one
per progress event), are committed in groups (``GroupCommitter``, under the same lock).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import Channel, RequestStatus
from pactmesh_kit.stores.outbox import SqliteOutbox
from pactmesh_kit.stores.sqlite import GroupCommitter, connect, transaction

from pactmesh_intake.adapters.migrations import MIGRATIONS
from pactmesh_intake.domain.requests import (
    HistoryEntry,
    KeyHolder,
    RequestView,
    ResultView,
    Submission,
    Transition,
    next_status,
)

_INSERT_REQUEST = (
    "INSERT OR IGNORE INTO requests"
    " (request_id, tenant, channel, status, workflow, created_at, updated_at, fingerprint)"
    " VALUES (?, ?, ?, ?, NULL, ?, ?, ?)"
)
_INSERT_HISTORY = "INSERT OR IGNORE INTO history VALUES (?, ?, ?, ?, ?, ?)"
_BATCH = 1000
"""Rows deleted per statement by retention."""


class SqliteRequestStore:
    """``RequestStore`` on one aiosqlite connection (WAL, so readers never block writes)."""

    def __init__(self, conn: aiosqlite.Connection, *, lease_s: float) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._lease_s = lease_s
        self.outbox = SqliteOutbox(conn, "request_outbox", lock=self._lock)
        self._grouped = GroupCommitter(conn, self._lock)

    def _transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        return transaction(self._conn, self._lock)

    async def create(
        self,
        *,
        request_id: uuid.UUID,
        tenant: str,
        channel: Channel,
        at: datetime,
        fingerprint: str | None = None,
        event: Envelope[Any] | None = None,
    ) -> bool:
        async with self._transaction() as conn:
            return await self._insert(conn, request_id, tenant, channel, at, fingerprint, event)

    async def _insert(
        self,
        conn: aiosqlite.Connection,
        request_id: uuid.UUID,
        tenant: str,
        channel: Channel,
        at: datetime,
        fingerprint: str | None,
        event: Envelope[Any] | None,
    ) -> bool:
        """The request, its first history entry and its event in the outbox."""
        accepted, when = RequestStatus.ACCEPTED.value, at.isoformat()
        row = (str(request_id), tenant, channel.value, accepted, when, when, fingerprint)
        cursor = await conn.execute(_INSERT_REQUEST, row)
        if cursor.rowcount != 1:
            return False
        detail = f"received over {channel.value}"
        entry = (f"created:{request_id}", str(request_id), accepted, "intake", detail, when)
        await conn.execute(_INSERT_HISTORY, entry)
        if event is not None:
            await conn.execute(
                "INSERT INTO request_outbox VALUES (?, ?, ?)",
                (str(event.event_id), event.model_dump_json(), _epoch(at) + self._lease_s),
            )
        return True

    async def create_keyed(
        self,
        *,
        request_id: uuid.UUID,
        tenant: str,
        key: str,
        fingerprint: str,
        at: datetime,
        expired_before: datetime,
        event: Envelope[Any] | None = None,
    ) -> KeyHolder:
        # The expired binding goes first, then the primary key decides: INSERT OR IGNORE
        # is atomic, and the request is written in the same transaction only if it won.
        async with self._transaction() as conn:
            await conn.execute(
                "DELETE FROM idempotency_keys WHERE tenant = ? AND key = ? AND created_at < ?",
                (tenant, key, _instant(expired_before)),
            )
            cursor = await conn.execute(
                "INSERT OR IGNORE INTO idempotency_keys VALUES (?, ?, ?, ?, ?)",
                (tenant, key, str(request_id), fingerprint, _instant(at)),
            )
            if cursor.rowcount == 1:
                await self._insert(conn, request_id, tenant, Channel.HTTP, at, fingerprint, event)
                return KeyHolder(request_id, fingerprint)
            async with conn.execute(
                "SELECT request_id, fingerprint FROM idempotency_keys WHERE tenant = ? AND key = ?",
                (tenant, key),
            ) as found:
                row = await found.fetchone()
        assert row is not None, "a key that refused a claim is held"
        return KeyHolder(uuid.UUID(row[0]), row[1])

    async def submission(self, request_id: uuid.UUID) -> Submission | None:
        row = await self._one(
            "SELECT tenant, channel, status, fingerprint FROM requests WHERE request_id = ?",
            request_id,
        )
        if row is None:
            return None
        tenant, channel, status, digest = row
        return Submission(tenant, Channel(channel), RequestStatus(status), digest)

    async def record_result(self, *, request_id: uuid.UUID, result: ResultView) -> bool:
        cursor = await self._conn.execute(
            "INSERT OR IGNORE INTO results SELECT request_id, ? FROM requests"
            " WHERE request_id = ?",  # only for a request submitted to this intake
            (result.model_dump_json(), str(request_id)),
        )
        return cursor.rowcount == 1

    async def result(self, request_id: uuid.UUID) -> ResultView | None:
        row = await self._one("SELECT result FROM results WHERE request_id = ?", request_id)
        return None if row is None else ResultView.model_validate(json.loads(row[0]))

    async def status(self, request_id: uuid.UUID) -> RequestStatus | None:
        row = await self._one("SELECT status FROM requests WHERE request_id = ?", request_id)
        return None if row is None else RequestStatus(row[0])

    async def record(self, transition: Transition) -> bool:
        return await self._grouped.run(partial(_record, transition))

    async def get(self, request_id: uuid.UUID) -> RequestView | None:
        row = await self._one(
            "SELECT tenant, channel, status, workflow, created_at, updated_at, result"
            " FROM requests LEFT JOIN results USING (request_id) WHERE request_id = ?",
            request_id,
        )
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
        tenant, channel, status, workflow, created, updated, result = row
        return RequestView(
            request_id=request_id,
            tenant=tenant,
            channel=Channel(channel),
            status=RequestStatus(status),
            workflow=workflow,
            created_at=datetime.fromisoformat(created),
            updated_at=datetime.fromisoformat(updated),
            history=history,
            result=None if result is None else ResultView.model_validate_json(result),
        )

    async def prune(self, *, updated_before: datetime, keys_before: datetime) -> dict[str, int]:
        requests = 0
        while True:
            async with self._transaction() as conn:
                gone = await self._prune_requests(conn, updated_before)
            requests += gone
            if gone < _BATCH:
                break
        cursor = await self._conn.execute(
            "DELETE FROM idempotency_keys WHERE created_at < ?", (_instant(keys_before),)
        )
        return {"requests": requests, "idempotency_keys": cursor.rowcount}

    @staticmethod
    async def _prune_requests(conn: aiosqlite.Connection, updated_before: datetime) -> int:
        async with conn.execute(
            "SELECT request_id FROM requests WHERE updated_at < ? LIMIT ?",
            (updated_before.isoformat(), _BATCH),
        ) as cursor:
            ids = [(row[0],) for row in await cursor.fetchall()]
        for table in ("history", "results", "requests"):
            await conn.executemany(f"DELETE FROM {table} WHERE request_id = ?", ids)
        return len(ids)

    async def _one(self, sql: str, request_id: uuid.UUID) -> Any:
        async with self._conn.execute(sql, (str(request_id),)) as cursor:
            return await cursor.fetchone()


def _record(transition: Transition, conn: sqlite3.Connection) -> bool:
    """A status transition, on the connection's thread (``GroupCommitter``)."""
    request_id = str(transition.request_id)
    row = conn.execute(
        "SELECT status, updated_at FROM requests WHERE request_id = ?", (request_id,)
    )
    found = row.fetchone()
    if found is None:
        return False  # not a request of this intake: nothing to report on
    at = transition.at.isoformat()
    entry = (str(transition.event_id), request_id, transition.status.value)
    added = conn.execute(_INSERT_HISTORY, (*entry, transition.service, transition.detail, at))
    if added.rowcount != 1:
        return False
    # A transition recorded late (a stream writes the terminal one ahead of the store's
    # group) never moves ``updated_at`` back.
    updated = max(datetime.fromisoformat(found[1]), transition.at)
    conn.execute(
        "UPDATE requests SET status = ?, workflow = COALESCE(?, workflow),"
        " updated_at = ? WHERE request_id = ?",
        (
            next_status(RequestStatus(found[0]), transition.status).value,
            transition.workflow,
            updated.isoformat(),
            request_id,
        ),
    )
    return True


def _instant(at: datetime) -> str:
    """A UTC time as text that sorts in time order (fixed width, microseconds)."""
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _epoch(at: datetime) -> float:
    return at.timestamp()


@asynccontextmanager
async def open_sqlite_store(
    path: Path, *, lease_s: float = 30.0
) -> AsyncIterator[SqliteRequestStore]:
    """Open the store at ``path``, creating or migrating its file first; ``lease_s`` is
    how long a new outbox event is left to the writer before the relay may publish it."""
    await MIGRATIONS.upgrade(path)
    async with connect(path, "synchronous=NORMAL") as conn:
        store = SqliteRequestStore(conn, lease_s=lease_s)
        await store.outbox.release()
        yield store
