"""The review store on Postgres, shared by every hitl instance.

Each state change is one statement: a conditional UPDATE whose returned row feeds the
history entry (and, for a decision or an expiry, the outbox event) through
data-modifying CTEs, so the change, its record and its announcement commit together or
not at all. Of two instances acting on one review, the row lock makes the second
re-check the condition against the first's result, and its UPDATE matches nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pactmesh_contracts.envelope import Envelope
from pactmesh_kit.stores.outbox import PostgresOutbox
from pactmesh_kit.stores.postgres import Pool, open_pool
from psycopg import AsyncConnection
from psycopg.rows import TupleRow

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
_UNCLAIMED_BY_OTHERS = (
    "(claimed_by IS NULL OR claimed_by = %(reviewer)s OR claimed_until <= %(now)s)"
)
_RECORD = (
    "h AS (INSERT INTO review_history (review_id, at, actor, action, detail)"
    " SELECT review_id, %(now)s, %(actor)s, %(action)s, %(detail)s FROM changed)"
)
_ANNOUNCE = (
    ", o AS (INSERT INTO review_outbox (event_id, event, publish_after)"
    " SELECT %(event_id)s, %(event)s, %(after)s FROM changed)"
)
_CLAIM = (
    "UPDATE reviews SET claimed_by = %(reviewer)s, claimed_until = %(until)s"
    " WHERE review_id = %(id)s AND state = 'pending' AND expires_at > %(now)s"
    f" AND {_UNCLAIMED_BY_OTHERS}"
)
_RELEASE = (
    "UPDATE reviews SET claimed_by = NULL, claimed_until = NULL"
    " WHERE review_id = %(id)s AND state = 'pending' AND claimed_by = %(reviewer)s"
)
_DECIDE = (
    "UPDATE reviews SET state = 'decided', decision = %(decision)s, decided_by = %(reviewer)s,"
    " decided_at = %(now)s, comment = %(comment)s, edited_action = %(edited)s,"
    " settled_at = %(now)s WHERE review_id = %(id)s AND state = 'pending'"
    f" AND expires_at > %(now)s AND {_UNCLAIMED_BY_OTHERS}"
)
_EXPIRE = (
    "UPDATE reviews SET state = 'expired', decision = 'expire', decided_by = %(actor)s,"
    " decided_at = %(now)s, comment = %(reason)s, settled_at = %(now)s"
    " WHERE review_id = %(id)s AND state = 'pending'"
)
_MOVE = "UPDATE reviews SET state = %(state)s, settled_at = %(now)s WHERE {where}"
_PRUNE = (
    "WITH gone AS (DELETE FROM reviews WHERE review_id IN (SELECT review_id FROM reviews"
    " WHERE state <> 'pending' AND settled_at < %(before)s LIMIT %(batch)s"
    " FOR UPDATE SKIP LOCKED) RETURNING review_id),"
    " h AS (DELETE FROM review_history WHERE review_id IN (SELECT review_id FROM gone))"
    " SELECT count(*) FROM gone"
)
_BATCH = 500
"""Reviews deleted per statement by retention (locked rows are skipped, so instances
pruning at once neither wait for nor repeat each other)."""


def _changing(update: str, *, announce: bool = False) -> str:
    """``update`` (with ``RETURNING review_id``) and its history entry, and its outbox
    event when ``announce``, as one statement counting the reviews changed."""
    outbox = _ANNOUNCE if announce else ""
    return (
        f"WITH changed AS ({update} RETURNING review_id), {_RECORD}{outbox}"
        " SELECT count(*) FROM changed"
    )


_CLAIMING = _changing(_CLAIM)
_RELEASING = _changing(_RELEASE)
_DECIDING = _changing(_DECIDE, announce=True)
_EXPIRING = _changing(_EXPIRE, announce=True)
_WITHDRAWING = _changing(_MOVE.format(where="workflow_id = %(workflow_id)s AND state = 'pending'"))


def _filters(query: ListQuery, now: datetime) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"tenant": query.tenant, "state": query.state, "now": now}
    parts = ["tenant = %(tenant)s"]
    if query.state == "claimed":
        parts.append("state = 'pending' AND claimed_by IS NOT NULL AND claimed_until > %(now)s")
    else:
        parts.append("state = %(state)s")
    if query.workflow is not None:
        parts.append("workflow = %(workflow)s")
        params["workflow"] = query.workflow
    if query.priorities:
        parts.append("priority = ANY(%(priorities)s)")
        params["priorities"] = [p.value for p in query.priorities]
    if query.requested_before is not None:
        parts.append("requested_at <= %(before)s")
        params["before"] = query.requested_before
    if query.requested_after is not None:
        parts.append("requested_at >= %(after)s")
        params["after"] = query.requested_after
    if query.after is not None:
        parts.append("(requested_at, review_id) > (%(key_at)s, %(key_id)s)")
        params.update(key_at=query.after[0], key_id=query.after[1])
    return " AND ".join(parts), params


class PostgresReviewStore:
    """``ReviewStore`` on a psycopg connection pool."""

    def __init__(self, pool: Pool, *, lease_s: float) -> None:
        self._pool = pool
        self._lease_s = lease_s
        self.outbox = PostgresOutbox(pool, "review_outbox")

    async def _count(self, sql: str, params: dict[str, Any]) -> int:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    def _announcing(self, event: Envelope[Any], now: datetime) -> dict[str, Any]:
        return {
            "event_id": event.event_id,
            "event": event.model_dump_json(),
            "after": now.timestamp() + self._lease_s,
        }

    async def add(self, review: Review) -> bool:
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(
                f"INSERT INTO reviews ({COLUMNS}) VALUES ({', '.join(['%s'] * COLUMN_COUNT)})"
                " ON CONFLICT (review_id) DO NOTHING",
                row_of(review, ident=lambda i: i, instant=lambda t: t),
            )
            if cursor.rowcount != 1:
                return False
            detail = requested_detail(review)
            if review.attempt > 0 and (escalated := await _escalate_previous(conn, review)):
                detail["escalated_from"] = escalated
            await conn.execute(
                "INSERT INTO review_history (review_id, at, actor, action, detail)"
                " VALUES (%s, %s, 'workflow', 'requested', %s)",
                (review.review_id, review.requested_at, json.dumps(detail)),
            )
            return True

    async def open_reviews(self) -> list[tuple[str, datetime]]:
        """``(priority, requested_at)`` of every review still pending (claimed or not),
        for the metrics; all tenants."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT priority, requested_at FROM reviews WHERE state = 'pending'"
            )
            return [(priority, at) for priority, at in await cursor.fetchall()]

    async def get(self, review_id: uuid.UUID) -> Review | None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {COLUMNS} FROM reviews WHERE review_id = %s", (review_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else review_of(row)

    async def find(self, query: ListQuery, *, now: datetime) -> list[Review]:
        where, params = _filters(query, now)
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {COLUMNS} FROM reviews WHERE {where}"
                " ORDER BY requested_at, review_id LIMIT %(limit)s",
                {**params, "limit": query.limit},
            )
            return [review_of(row) for row in await cursor.fetchall()]

    async def claim(
        self, review_id: uuid.UUID, *, reviewer: str, until: datetime, now: datetime
    ) -> bool:
        params = _entry(review_id, now, reviewer, "claimed", {"until": utc_text(until)})
        return await self._count(_CLAIMING, {**params, "until": until}) == 1

    async def release(self, review_id: uuid.UUID, *, reviewer: str, now: datetime) -> bool:
        return await self._count(_RELEASING, _entry(review_id, now, reviewer, "released", {})) == 1

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
        params = {
            **_entry(review_id, now, reviewer, "decided", detail),
            **self._announcing(event, now),
            "decision": decision,
            "comment": comment,
            "edited": None if edited_action is None else json.dumps(edited_action),
        }
        return await self._count(_DECIDING, params) == 1

    async def expire(
        self,
        review_id: uuid.UUID,
        *,
        actor: str,
        reason: str,
        event: Envelope[Any],
        now: datetime,
    ) -> bool:
        params = {
            **_entry(review_id, now, actor, "expired", {"reason": reason}),
            **self._announcing(event, now),
            "reason": reason,
        }
        return await self._count(_EXPIRING, params) == 1

    async def due(self, now: datetime) -> list[Review]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {COLUMNS} FROM reviews WHERE state = 'pending' AND expires_at <= %s"
                " ORDER BY expires_at",
                (now,),
            )
            return [review_of(row) for row in await cursor.fetchall()]

    async def withdraw_for(self, workflow_id: uuid.UUID, *, now: datetime) -> int:
        params = _entry(None, now, "workflow", "withdrawn", {"reason": "the workflow ended"})
        return await self._count(
            _WITHDRAWING, {**params, "workflow_id": workflow_id, "state": "withdrawn"}
        )

    async def history(self, review_id: uuid.UUID) -> list[HistoryEntry]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT at, actor, action, detail FROM review_history WHERE review_id = %s"
                " ORDER BY seq",
                (review_id,),
            )
            return [history_of(row) for row in await cursor.fetchall()]

    async def prune(self, *, settled_before: datetime) -> dict[str, int]:
        pruned = 0
        while True:
            gone = await self._count(_PRUNE, {"before": settled_before, "batch": _BATCH})
            pruned += gone
            if gone < _BATCH:
                return {"reviews": pruned}


async def _escalate_previous(conn: AsyncConnection[TupleRow], review: Review) -> list[str]:
    """Mark the expired review(s) the escalated ``review`` follows up on."""
    params = {
        **_entry(
            None,
            review.requested_at,
            "policy:expiry",
            "escalated",
            {"to_role": review.required_role, "review_id": str(review.review_id)},
        ),
        "state": ReviewState.ESCALATED.value,
        "workflow_id": review.workflow_id,
        "rule": review.rule,
        "attempt": review.attempt - 1,
    }
    where = (
        "workflow_id = %(workflow_id)s AND rule = %(rule)s AND attempt = %(attempt)s"
        " AND state = 'expired'"
    )
    cursor = await conn.execute(
        f"WITH changed AS ({_MOVE.format(where=where)} RETURNING review_id), {_RECORD}"
        " SELECT review_id FROM changed",
        params,
    )
    return [str(row[0]) for row in await cursor.fetchall()]


def _entry(
    review_id: uuid.UUID | None, now: datetime, actor: str, action: str, detail: dict[str, Any]
) -> dict[str, Any]:
    """Parameters of a change's history entry (``reviewer`` is the actor, for claims)."""
    return {
        "id": review_id,
        "now": now,
        "actor": actor,
        "reviewer": actor,
        "action": action,
        "detail": json.dumps(detail),
    }


@asynccontextmanager
async def open_postgres_store(
    url: str, *, pool_size: int = 10, lease_s: float = 30.0
) -> AsyncIterator[PostgresReviewStore]:
    """Migrate the database at ``url`` (one instance at a time), then open a pool on it."""
    await MIGRATIONS.upgrade(url)
    async with open_pool(url, size=pool_size, name="hitl") as pool:
        yield PostgresReviewStore(pool, lease_s=lease_s)
