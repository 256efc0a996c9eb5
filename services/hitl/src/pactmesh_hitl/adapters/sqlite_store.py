"""The review store on SQLite.

Every state change is one conditional UPDATE inside a ``BEGIN IMMEDIATE`` transaction,
together with its history entry: of two writers (two coroutines on one connection, or
two processes on one file), exactly one matches the row and the other sees the result.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from pactmesh_contracts.envelope import Principal
from pactmesh_contracts.events import ReviewPriority

from pactmesh_hitl.domain.reviews import HistoryEntry, ListQuery, Review, ReviewState

SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    review_id        TEXT PRIMARY KEY,
    workflow_id      TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    tenant           TEXT NOT NULL,
    rule             TEXT NOT NULL,
    summary          TEXT NOT NULL,
    action_type      TEXT NOT NULL,
    action           TEXT NOT NULL,
    role             TEXT NOT NULL,
    expires_at       TEXT NOT NULL,
    state            TEXT NOT NULL,
    requested_at     TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    principal        TEXT,
    request_event_id TEXT,
    decision         TEXT,
    decided_by       TEXT,
    decided_at       TEXT,
    comment          TEXT,
    edited_action    TEXT,
    priority         TEXT NOT NULL DEFAULT 'normal',
    claimed_by       TEXT,
    claimed_until    TEXT
);
CREATE INDEX IF NOT EXISTS reviews_by_state ON reviews (state, tenant, requested_at);
CREATE INDEX IF NOT EXISTS reviews_by_workflow ON reviews (workflow_id);
CREATE INDEX IF NOT EXISTS reviews_by_deadline ON reviews (state, expires_at);
CREATE TABLE IF NOT EXISTS review_history (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    review_id TEXT NOT NULL,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS review_history_by_review ON review_history (review_id, seq);
"""

MIGRATE_2_TO_3 = """
ALTER TABLE reviews ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE reviews ADD COLUMN claimed_by TEXT;
ALTER TABLE reviews ADD COLUMN claimed_until TEXT;
CREATE TABLE review_history (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    review_id TEXT NOT NULL,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL
);
INSERT INTO review_history (review_id, at, actor, action, detail)
    SELECT review_id, requested_at, 'workflow', 'requested',
           json_object('rule', rule, 'required_role', role, 'attempt', attempt)
    FROM reviews ORDER BY requested_at;
INSERT INTO review_history (review_id, at, actor, action, detail)
    SELECT review_id, decided_at, decided_by,
           CASE state WHEN 'expired' THEN 'expired' ELSE 'decided' END,
           json_object('decision', decision, 'comment', comment)
    FROM reviews WHERE decided_at IS NOT NULL ORDER BY decided_at;
"""
SCHEMA_VERSION = 3
"""Bumped when the tables change. Version 2 files are migrated in place; anything older
is set aside (it only ever held development data)."""

_COLUMNS = (
    "review_id, workflow_id, workflow, tenant, rule, summary, action_type, action, role,"
    " expires_at, state, requested_at, attempt, principal, request_event_id, decision,"
    " decided_by, decided_at, comment, edited_action, priority, claimed_by, claimed_until"
)
_PENDING = ReviewState.PENDING.value
_UNCLAIMED_BY_OTHERS = "(claimed_by IS NULL OR claimed_by = ? OR claimed_until <= ?)"


def _utc(moment: datetime) -> str:
    """Times are stored as UTC ISO-8601 text with a fixed precision, so comparing and
    sorting the text is comparing the instants."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _opt_utc(moment: datetime | None) -> str | None:
    return None if moment is None else _utc(moment)


def _opt_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _opt_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _row_to_review(row: Any) -> Review:
    return Review(
        review_id=uuid.UUID(row[0]),
        workflow_id=uuid.UUID(row[1]),
        workflow=row[2],
        tenant=row[3],
        rule=row[4],
        summary=row[5],
        action_type=row[6],
        proposed_action=json.loads(row[7]),
        required_role=row[8],
        expires_at=datetime.fromisoformat(row[9]),
        state=ReviewState(row[10]),
        requested_at=datetime.fromisoformat(row[11]),
        attempt=row[12],
        principal=Principal.model_validate_json(row[13]) if row[13] else None,
        request_event_id=uuid.UUID(row[14]) if row[14] else None,
        decision=row[15],
        decided_by=row[16],
        decided_at=_opt_time(row[17]),
        comment=row[18],
        edited_action=json.loads(row[19]) if row[19] else None,
        priority=ReviewPriority(row[20]),
        claimed_by=row[21],
        claimed_until=_opt_time(row[22]),
    )


def _review_row(review: Review) -> tuple[Any, ...]:
    return (
        str(review.review_id),
        str(review.workflow_id),
        review.workflow,
        review.tenant,
        review.rule,
        review.summary,
        review.action_type,
        json.dumps(review.proposed_action),
        review.required_role,
        _utc(review.expires_at),
        review.state.value,
        _utc(review.requested_at),
        review.attempt,
        review.principal.model_dump_json() if review.principal else None,
        str(review.request_event_id) if review.request_event_id else None,
        review.decision,
        review.decided_by,
        _opt_utc(review.decided_at),
        review.comment,
        _opt_json(review.edited_action),
        review.priority.value,
        review.claimed_by,
        _opt_utc(review.claimed_until),
    )


def _state_clause(query: ListQuery, now: datetime) -> tuple[str, list[object]]:
    if query.state == "claimed":
        return "state = ? AND claimed_by IS NOT NULL AND claimed_until > ?", [_PENDING, _utc(now)]
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
        params.append(_utc(query.requested_before))
    if query.requested_after is not None:
        parts.append("requested_at >= ?")
        params.append(_utc(query.requested_after))
    if query.after is not None:
        parts.append("(requested_at, review_id) > (?, ?)")
        params.extend((_utc(query.after[0]), str(query.after[1])))
    return " AND ".join(parts), params


class SqliteReviewStore:
    """``ReviewStore`` on one aiosqlite connection (autocommit mode; writes take the
    database's write lock up front with ``BEGIN IMMEDIATE``)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        # One connection runs one transaction at a time: coroutines sharing it take turns,
        # and a read never sees another coroutine's transaction half done.
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

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
            (str(review_id), _utc(at), actor, action, json.dumps(detail)),
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
        """Put each of ``review_ids`` in ``state``, with the same history entry."""
        for review_id in review_ids:
            await conn.execute(
                "UPDATE reviews SET state = ? WHERE review_id = ?", (state.value, review_id)
            )
            await cls._record(conn, review_id, at=at, actor=actor, action=action, detail=detail)

    async def add(self, review: Review) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                f"INSERT OR IGNORE INTO reviews ({_COLUMNS}) VALUES ({', '.join('?' * 23)})",
                _review_row(review),
            )
            if cursor.rowcount != 1:
                return False
            detail: dict[str, Any] = {
                "rule": review.rule,
                "required_role": review.required_role,
                "priority": review.priority.value,
                "expires_at": _utc(review.expires_at),
                "attempt": review.attempt,
            }
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
        """``(priority, requested_at)`` of every review not yet decided (pending or
        claimed), for the metrics; all tenants."""
        async with self._conn.execute(
            "SELECT priority, requested_at FROM reviews WHERE state IN ('pending', 'claimed')"
        ) as cursor:
            return [(p, datetime.fromisoformat(at)) for p, at in await cursor.fetchall()]

    async def get(self, review_id: uuid.UUID) -> Review | None:
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {_COLUMNS} FROM reviews WHERE review_id = ?", (str(review_id),)
            ) as cursor,
        ):
            row = await cursor.fetchone()
        return None if row is None else _row_to_review(row)

    async def find(self, query: ListQuery, *, now: datetime) -> list[Review]:
        where, params = _filters(query, now)
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {_COLUMNS} FROM reviews WHERE {where}"
                " ORDER BY requested_at, review_id LIMIT ?",
                (*params, query.limit),
            ) as cursor,
        ):
            return [_row_to_review(row) for row in await cursor.fetchall()]

    async def claim(
        self, review_id: uuid.UUID, *, reviewer: str, until: datetime, now: datetime
    ) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE reviews SET claimed_by = ?, claimed_until = ?"
                f" WHERE review_id = ? AND state = ? AND expires_at > ? AND {_UNCLAIMED_BY_OTHERS}",
                (reviewer, _utc(until), str(review_id), _PENDING, _utc(now), reviewer, _utc(now)),
            )
            if cursor.rowcount != 1:
                return False
            await self._record(
                conn,
                review_id,
                at=now,
                actor=reviewer,
                action="claimed",
                detail={"until": _utc(until)},
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
        now: datetime,
    ) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE reviews SET state = ?, decision = ?, decided_by = ?, decided_at = ?,"
                " comment = ?, edited_action = ?"
                f" WHERE review_id = ? AND state = ? AND expires_at > ? AND {_UNCLAIMED_BY_OTHERS}",
                (
                    ReviewState.DECIDED.value,
                    decision,
                    reviewer,
                    _utc(now),
                    comment,
                    _opt_json(edited_action),
                    str(review_id),
                    _PENDING,
                    _utc(now),
                    reviewer,
                    _utc(now),
                ),
            )
            if cursor.rowcount != 1:
                return False
            await self._record(
                conn, review_id, at=now, actor=reviewer, action="decided", detail=detail
            )
            return True

    async def expire(self, review_id: uuid.UUID, *, actor: str, reason: str, now: datetime) -> bool:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE reviews SET state = ?, decision = 'expire', decided_by = ?,"
                " decided_at = ?, comment = ? WHERE review_id = ? AND state = ?",
                (ReviewState.EXPIRED.value, actor, _utc(now), reason, str(review_id), _PENDING),
            )
            if cursor.rowcount != 1:
                return False
            await self._record(
                conn, review_id, at=now, actor=actor, action="expired", detail={"reason": reason}
            )
            return True

    async def reopen(self, review_id: uuid.UUID, *, reason: str, now: datetime) -> None:
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE reviews SET state = ?, decision = NULL, decided_by = NULL,"
                " decided_at = NULL, comment = NULL, edited_action = NULL"
                " WHERE review_id = ? AND state IN (?, ?)",
                (_PENDING, str(review_id), ReviewState.DECIDED.value, ReviewState.EXPIRED.value),
            )
            if cursor.rowcount == 1:
                await self._record(
                    conn,
                    review_id,
                    at=now,
                    actor="hitl",
                    action="reopened",
                    detail={"reason": reason},
                )

    async def due(self, now: datetime) -> list[Review]:
        async with (
            self._lock,
            self._conn.execute(
                f"SELECT {_COLUMNS} FROM reviews"
                " WHERE state = ? AND expires_at <= ? ORDER BY expires_at",
                (_PENDING, _utc(now)),
            ) as cursor,
        ):
            return [_row_to_review(row) for row in await cursor.fetchall()]

    async def withdraw_for(self, workflow_id: uuid.UUID, *, now: datetime) -> int:
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
        return [
            HistoryEntry(
                at=datetime.fromisoformat(at), actor=actor, action=action, detail=json.loads(detail)
            )
            for at, actor, action, detail in rows
        ]


async def _schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def _prepare(conn: aiosqlite.Connection) -> None:
    version = await _schema_version(conn)
    await conn.execute("BEGIN IMMEDIATE")
    if version == 2:  # statement by statement: executescript would commit midway
        for statement in filter(str.strip, MIGRATE_2_TO_3.split(";")):
            await conn.execute(statement)
    elif version != SCHEMA_VERSION:
        await conn.execute("DROP TABLE IF EXISTS reviews")
        await conn.execute("DROP TABLE IF EXISTS review_history")
    for statement in filter(str.strip, SCHEMA.split(";")):
        await conn.execute(statement)
    await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    await conn.execute("COMMIT")


@asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[SqliteReviewStore]:
    """Open (creating or migrating if needed) the review store at ``path``.

    Several stores (processes) may open one file: each waits up to 10 s for another's
    write lock instead of failing at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path, isolation_level=None) as conn:
        await conn.execute("PRAGMA busy_timeout = 10000")
        await conn.execute("PRAGMA journal_mode=WAL")
        await _prepare(conn)
        yield SqliteReviewStore(conn)
