"""The review store on SQLite."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import aiosqlite

from pactmesh_hitl.domain.reviews import Review, ReviewState

SCHEMA = """
CREATE TABLE IF NOT EXISTS reviews (
    review_id    TEXT PRIMARY KEY,
    workflow_id  TEXT NOT NULL,
    workflow     TEXT NOT NULL,
    tenant       TEXT NOT NULL,
    rule         TEXT NOT NULL,
    summary      TEXT NOT NULL,
    action       TEXT NOT NULL,
    role         TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    state        TEXT NOT NULL,
    requested_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_by_state ON reviews (state, tenant, requested_at);
CREATE INDEX IF NOT EXISTS reviews_by_workflow ON reviews (workflow_id);
"""


def _row_to_review(row: aiosqlite.Row) -> Review:
    return Review(
        review_id=uuid.UUID(row[0]),
        workflow_id=uuid.UUID(row[1]),
        workflow=row[2],
        tenant=row[3],
        rule=row[4],
        summary=row[5],
        proposed_action=json.loads(row[6]),
        required_role=row[7],
        expires_at=datetime.fromisoformat(row[8]),
        state=ReviewState(row[9]),
        requested_at=datetime.fromisoformat(row[10]),
    )


class SqliteReviewStore:
    """``ReviewStore`` on one aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def add(self, review: Review) -> bool:
        cursor = await self._conn.execute(
            "INSERT OR IGNORE INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                str(review.review_id),
                str(review.workflow_id),
                review.workflow,
                review.tenant,
                review.rule,
                review.summary,
                json.dumps(review.proposed_action),
                review.required_role,
                review.expires_at.isoformat(),
                review.state.value,
                review.requested_at.isoformat(),
            ),
        )
        await self._conn.commit()
        return cursor.rowcount == 1

    async def pending(self, *, tenant: str | None, limit: int, offset: int) -> list[Review]:
        query = "SELECT * FROM reviews WHERE state = ?"
        params: list[object] = [ReviewState.PENDING.value]
        if tenant is not None:
            query += " AND tenant = ?"
            params.append(tenant)
        query += " ORDER BY requested_at LIMIT ? OFFSET ?"
        async with self._conn.execute(query, (*params, limit, offset)) as cursor:
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
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.executescript(SCHEMA)
        await conn.commit()
        yield SqliteReviewStore(conn)
