"""The review store on SQLite (one file, one hitl instance).

Every state change is one conditional UPDATE inside a ``BEGIN IMMEDIATE`` transaction,
together with its history entry (and, for a decision or an expiry, the event that
announces it, in the outbox): of two writers (two coroutines on one connection, or two
connections on one file), exactly one matches the row and the other sees the result.
The schema is Alembic's (``migrations``), applied when the store opens.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite
from pactmesh_contracts.envelope import Envelope
from pactmesh_kit.stores.outbox import SqliteOutbox
from pactmesh_kit.stores.sqlite import connect, transaction

from pactmesh_hitl.adapters.migrations import MIGRATIONS
from pactmesh_hitl.adapters.rows import (
    COLUMN_COUNT,
    COLUMNS,
    history_of,
    requested_detail,
    review_of,
    row_of,
    utc_text,
)
from pactmesh_hitl.domain.reviews import HistoryEntry, ListQuery, Review, ReviewState

_PENDING = ReviewState.PENDING.value
_UNCLAIMED_BY_OTHERS = "(claimed_by IS NULL OR claimed_by = ? OR claimed_until <= ?)"
_BATCH = 500
"""Reviews deleted per transaction by retention."""


def _state_clause(query: ListQuery, now: datetime) -> tuple[str, list[object]]:
    if query.state == "claimed":
        return "state = ? AND claimed_by IS NOT NULL AND claimed_until > ?", [
            _PENDING,
            utc_text(now),
        ]
    return "state = ?", [query.state]


def _filters(query: ListQuery, now: datetime) -> tuple[str, list[object]]:
    clause, params = _state_clause(query, now)
    parts, params = ["tenant = ?", clause], [query.tenant, *params]
    if query.workflow is not None:
        parts.append("workflow = ?")
        params.append(query.workflow)
    if query.priorities:
        parts.append(f"priority IN ({', '.join('?' * len(query.priorities))})")
        params.extend(p.value for p in query.priorities)
    if query.requested_before is not None:
        parts.append("requested_at <= ?")
        params.append(utc_text(query.requested_before))
    if query.requested_after is not None:
        parts.append("requested_at >= ?")
        params.append(utc_text(query.requested_after))
    if query.after is not None:
        parts.append("(requested_at, review_id) > (?, ?)")
        params.extend((utc_text(query.after[0]), str(query.after[1])))
    return " AND ".join(parts), params


class SqliteReviewStore:
    """``ReviewStore`` on one aiosqlite connection (autocommit mode; writes take the
    database's write lock up front with ``BEGIN IMMEDIATE``)."""

    def __init__(self, conn: aiosqlite.Connection, *, lease_s: float) -> None:
        self._conn = conn
        # One connection runs one transaction at a time: coroutines sharing it take turns,
        # and a read never sees another coroutine's transaction half done.
        self._lock = asyncio.Lock()
        self._lease_s = lease_s
        self.outbox = SqliteOutbox(conn, "review_outbox", lock=self._lock)

    def _transaction(self) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        return transaction(self._conn, self._lock)

    @staticmethod
    async def _record(
        conn: aiosqlite.Connection,
        review_id: uuid.UUID | str,
        *,
        at: datetime,
        actor: str,
        action: str,
        detail: dict[str, Any],
    ) -> None:
        await conn.execute(
            "INSERT INTO review_history (review_id, at, actor, action, detail)"
            " VALUES (?, ?, ?, ?, ?)",
            (str(review_id), utc_text(at), actor, action, json.dumps(detail)),
        )

    async def _announce(
        self, conn: aiosqlite.Connection, event: Envelope[Any], now: datetime
    ) -> None:
        await conn.execute(
            "INSERT INTO review_outbox VALUES (?, ?, ?)",
            (str(event.event_id), event.model_dump_json(), now.timestamp() + self._lease_s),
        )

    @classmethod
    async def _move(
        cls,
        conn: aiosqlite.Connection,
        review_ids: list[str],
        state: ReviewState,
        *,
        at: datetime,
        actor: str,
        action: str,
        detail: dict[str, Any],
    ) -> None:
        """Settle each of ``review_ids`` in ``state``, with the same history entry."""
        for review_id in review_ids:
            await conn.execute(
                "UPDATE reviews SET state = ?, settled_at = ? WHERE review_id = ?",
                (state.value, utc_text(at), review_id),
            )
            await cls._record(conn, review_id, at=at, actor=actor, action=action, detail=detail)

    async def add(self, review: Review) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                f"INSERT OR IGNORE INTO reviews ({COLUMNS})"
                f" VALUES ({', '.join('?' * COLUMN_COUNT)})",
                row_of(review, ident=str, instant=utc_text),
            )
            if cursor.rowcount != 1:
                return False
            detail = requested_detail(review)
            if review.attempt > 0:
                escalated = await self._escalate_previous(conn, review)
                if escalated:
                    detail["escalated_from"] = escalated
            await self._record(
                conn,
                review.review_id,
                at=review.requested_at,
                actor="workflow",
                action="requested",
                detail=detail,
            )
            return True

    async def _escalate_previous(self, conn: aiosqlite.Connection, review: Review) -> list[str]:
        """Mark the expired review(s) this escalated request follows up on."""
        async with conn.execute(
            "SELECT review_id FROM reviews WHERE workflow_id = ? AND rule = ? AND attempt = ?"
            " AND state = ?",
            (
                str(review.workflow_id),
                review.rule,
                review.attempt - 1,
                ReviewState.EXPIRED.value,
            ),
        ) as cursor:
            previous = [row[0] for row in await cursor.fetchall()]
        await self._move(
            conn,
            previous,
            ReviewState.ESCALATED,
            at=review.requested_at,
            actor="policy:expiry",
            action="escalated",
            detail={"to_role": review.required_role, "review_id": str(review.review_id)},
        )
        return previous

    async def open_reviews(self) -> list[tuple[str, datetime]]:
        """``(priority, requested_at)`` of every review still pending (claimed or not),
        for the metrics; all tenants."""
        async with (
            self._lock,
            self._conn.execute(
                "SELECT priority, requested_at FROM reviews WHERE state = 'pending'"
            ) as cursor,
        ):
            return [(p, datetime.fromisoformat(at)) for p, at in await cursor.fetchall()]

    async def get(self, review_id: uuid.UUID) -> Review | None:
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {COLUMNS} FROM reviews WHERE review_id = ?", (str(review_id),)
            ) as cursor,
        ):
            row = await cursor.fetchone()
        return None if row is None else review_of(row)

    async def find(self, query: ListQuery, *, now: datetime) -> list[Review]:
        where, params = _filters(query, now)
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {COLUMNS} FROM reviews WHERE {where}"
                " ORDER BY requested_at, review_id LIMIT ?",
                (*params, query.limit),
            ) as cursor,
        ):
            return [review_of(row) for row in await cursor.fetchall()]

    async def claim(
        self, review_id: uuid.UUID, *, reviewer: str, until: datetime, now: datetime
    ) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE reviews SET claimed_by = ?, claimed_until = ?"
                f" WHERE review_id = ? AND state = ? AND expires_at > ? AND {_UNCLAIMED_BY_OTHERS}",
                (
                    reviewer,
                    utc_text(until),
                    str(review_id),
                    _PENDING,
                    utc_text(now),
                    reviewer,
                    utc_text(now),
                ),
            )
            if cursor.rowcount != 1:
                return False
            await self._record(
                conn,
                review_id,
                at=now,
                actor=reviewer,
                action="claimed",
                detail={"until": utc_text(until)},
            )
            return True

    async def release(self, review_id: uuid.UUID, *, reviewer: str, now: datetime) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE reviews SET claimed_by = NULL, claimed_until = NULL"
                " WHERE review_id = ? AND state = ? AND claimed_by = ?",
                (str(review_id), _PENDING, reviewer),
            )
            if cursor.rowcount != 1:
                return False
            await self._record(
                conn, review_id, at=now, actor=reviewer, action="released", detail={}
            )
            return True

    async def decide(
        self,
        review_id: uuid.UUID,
        *,
        reviewer: str,
        decision: str,
        comment: str,
        edited_action: dict[str, Any] | None,
        detail: dict[str, Any],
        event: Envelope[Any],
        now: datetime,
    ) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE reviews SET state = ?, decision = ?, decided_by = ?, decided_at = ?,"
                " comment = ?, edited_action = ?, settled_at = ?"
                f" WHERE review_id = ? AND state = ? AND expires_at > ? AND {_UNCLAIMED_BY_OTHERS}",
                (
                    ReviewState.DECIDED.value,
                    decision,
                    reviewer,
                    utc_text(now),
                    comment,
                    None if edited_action is None else json.dumps(edited_action),
                    utc_text(now),
                    str(review_id),
                    _PENDING,
                    utc_text(now),
                    reviewer,
                    utc_text(now),
                ),
            )
            if cursor.rowcount != 1:
                return False
            await self._record(
                conn, review_id, at=now, actor=reviewer, action="decided", detail=detail
            )
            await self._announce(conn, event, now)
            return True

    async def expire(
        self,
        review_id: uuid.UUID,
        *,
        actor: str,
        reason: str,
        event: Envelope[Any],
        now: datetime,
    ) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE reviews SET state = ?, decision = 'expire', decided_by = ?,"
                " decided_at = ?, comment = ?, settled_at = ? WHERE review_id = ? AND state = ?",
                (
                    ReviewState.EXPIRED.value,
                    actor,
                    utc_text(now),
                    reason,
                    utc_text(now),
                    str(review_id),
                    _PENDING,
                ),
            )
            if cursor.rowcount != 1:
                return False
            await self._record(
                conn, review_id, at=now, actor=actor, action="expired", detail={"reason": reason}
            )
            await self._announce(conn, event, now)
            return True

    async def due(self, now: datetime) -> list[Review]:
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {COLUMNS} FROM reviews"
                " WHERE state = ? AND expires_at <= ? ORDER BY expires_at",
                (_PENDING, utc_text(now)),
            ) as cursor,
        ):
            return [review_of(row) for row in await cursor.fetchall()]

    async def withdraw_for(self, workflow_id: uuid.UUID, *, now: datetime) -> int:
        # Almost every workflow ends with no review pending: one read answers for it. A
        # write transaction for each (BEGIN IMMEDIATE, the lock, COMMIT, each a hop to the
        # connection's thread) was 0.3 ms of CPU per finished workflow, most of hitl's
        # (bench/micro.py). A review added after the read is not withdrawn, as it was not
        # when it came after the transaction: the topics are not ordered with each other.
        async with self._lock:
            found = await self._conn.execute_fetchall(  # one hop: execute and fetch
                "SELECT 1 FROM reviews WHERE workflow_id = ? AND state = ? LIMIT 1",
                (str(workflow_id), _PENDING),
            )
        if not found:
            return 0
        async with self._transaction() as conn:
            async with conn.execute(
                "SELECT review_id FROM reviews WHERE workflow_id = ? AND state = ?",
                (str(workflow_id), _PENDING),
            ) as cursor:
                pending = [row[0] for row in await cursor.fetchall()]
            await self._move(
                conn,
                pending,
                ReviewState.WITHDRAWN,
                at=now,
                actor="workflow",
                action="withdrawn",
                detail={"reason": "the workflow ended"},
            )
            return len(pending)

    async def history(self, review_id: uuid.UUID) -> list[HistoryEntry]:
        async with (
            self._lock,
            self._conn.execute(
                "SELECT at, actor, action, detail FROM review_history WHERE review_id = ?"
                " ORDER BY seq",
                (str(review_id),),
            ) as cursor,
        ):
            rows = list(await cursor.fetchall())
        return [history_of(row) for row in rows]

    async def prune(self, *, settled_before: datetime) -> dict[str, int]:
        pruned = 0
        while True:
            async with self._transaction() as conn:
                async with conn.execute(
                    "SELECT review_id FROM reviews WHERE state <> ? AND settled_at < ? LIMIT ?",
                    (_PENDING, utc_text(settled_before), _BATCH),
                ) as cursor:
                    gone = [(row[0],) for row in await cursor.fetchall()]
                for table in ("review_history", "reviews"):
                    await conn.executemany(f"DELETE FROM {table} WHERE review_id = ?", gone)
            pruned += len(gone)
            if len(gone) < _BATCH:
                return {"reviews": pruned}


@asynccontextmanager
async def open_sqlite_store(
    path: Path, *, lease_s: float = 30.0
) -> AsyncIterator[SqliteReviewStore]:
    """Open the review store at ``path``, creating or migrating its file first.

    Several stores may open one file (the tests' contenders do): each waits up to 10 s
    for another's write lock instead of failing at once. ``lease_s`` is how long a new
    outbox event is left to its writer before the relay may publish it.
    """
    await MIGRATIONS.upgrade(path)
    async with connect(path, "busy_timeout = 10000") as conn:
        store = SqliteReviewStore(conn, lease_s=lease_s)
        await store.outbox.release()
        yield store
