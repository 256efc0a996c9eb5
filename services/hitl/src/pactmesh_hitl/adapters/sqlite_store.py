"""The review store on SQLite."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
from pactmesh_contracts.envelope import Principal

from pactmesh_hitl.domain.reviews import Review, ReviewState

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
    edited_action    TEXT
);
CREATE INDEX IF NOT EXISTS reviews_by_state ON reviews (state, tenant, requested_at);
CREATE INDEX IF NOT EXISTS reviews_by_workflow ON reviews (workflow_id);
CREATE INDEX IF NOT EXISTS reviews_by_deadline ON reviews (state, expires_at);
"""
SCHEMA_VERSION = 2
"""Bumped when the table changes; an older file is set aside (dev data only so far)."""

_COLUMNS = (
    "review_id, workflow_id, workflow, tenant, rule, summary, action_type, action, role,"
    " expires_at, state, requested_at, attempt, principal, request_event_id, decision,"
    " decided_by, decided_at, comment, edited_action"
)


def _utc(moment: datetime) -> str:
    """Times are stored as UTC ISO-8601 text, so comparing and sorting the text is
    comparing the instants (a +02:00 deadline would otherwise sort wrongly)."""
    return moment.astimezone(UTC).isoformat()


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
        decided_at=datetime.fromisoformat(row[17]) if row[17] else None,
        comment=row[18],
        edited_action=json.loads(row[19]) if row[19] else None,
    )


class SqliteReviewStore:
    """``ReviewStore`` on one aiosqlite connection; every decision is one atomic UPDATE."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def add(self, review: Review) -> bool:
        cursor = await self._conn.execute(
            f"INSERT OR IGNORE INTO reviews ({_COLUMNS}) VALUES ({', '.join('?' * 20)})",
            (
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
                _utc(review.decided_at) if review.decided_at else None,
                review.comment,
                _opt_json(review.edited_action),
            ),
        )
        await self._conn.commit()
        return cursor.rowcount == 1

    async def get(self, review_id: uuid.UUID) -> Review | None:
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM reviews WHERE review_id = ?", (str(review_id),)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _row_to_review(row)

    async def pending(
        self, *, tenant: str | None, workflow: str | None = None, limit: int, offset: int
    ) -> list[Review]:
        query = f"SELECT {_COLUMNS} FROM reviews WHERE state = ?"
        params: list[object] = [ReviewState.PENDING.value]
        for column, value in (("tenant", tenant), ("workflow", workflow)):
            if value is not None:
                query += f" AND {column} = ?"
                params.append(value)
        query += " ORDER BY requested_at LIMIT ? OFFSET ?"
        async with self._conn.execute(query, (*params, limit, offset)) as cursor:
            return [_row_to_review(row) for row in await cursor.fetchall()]

    async def decide(
        self,
        review_id: uuid.UUID,
        *,
        state: ReviewState,
        decision: str,
        reviewer: str,
        comment: str,
        edited_action: dict[str, Any] | None,
        at: datetime,
    ) -> bool:
        cursor = await self._conn.execute(
            "UPDATE reviews SET state = ?, decision = ?, decided_by = ?, decided_at = ?,"
            " comment = ?, edited_action = ? WHERE review_id = ? AND state = ?",
            (
                state.value,
                decision,
                reviewer,
                at.isoformat(),
                comment,
                _opt_json(edited_action),
                str(review_id),
                ReviewState.PENDING.value,
            ),
        )
        await self._conn.commit()
        return cursor.rowcount == 1

    async def reopen(self, review_id: uuid.UUID) -> None:
        await self._conn.execute(
            "UPDATE reviews SET state = ?, decision = NULL, decided_by = NULL, decided_at = NULL,"
            " comment = NULL, edited_action = NULL WHERE review_id = ?",
            (ReviewState.PENDING.value, str(review_id)),
        )
        await self._conn.commit()

    async def due(self, now: datetime) -> list[Review]:
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM reviews"
            " WHERE state = ? AND expires_at <= ? ORDER BY expires_at",
            (ReviewState.PENDING.value, _utc(now)),
        ) as cursor:
            return [_row_to_review(row) for row in await cursor.fetchall()]

    async def withdraw_for(self, workflow_id: uuid.UUID) -> int:
        cursor = await self._conn.execute(
            "UPDATE reviews SET state = ? WHERE workflow_id = ? AND state = ?",
            (ReviewState.WITHDRAWN.value, str(workflow_id), ReviewState.PENDING.value),
        )
        await self._conn.commit()
        return cursor.rowcount


@asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[SqliteReviewStore]:
    """Open (creating if needed) the review store at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as conn:
        async with conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        if row is not None and row[0] != SCHEMA_VERSION:
            await conn.execute("DROP TABLE IF EXISTS reviews")
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.executescript(SCHEMA)
        await conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await conn.commit()
        yield SqliteReviewStore(conn)
