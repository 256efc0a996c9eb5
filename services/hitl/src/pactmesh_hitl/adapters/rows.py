"""Reviews to table rows and back, for both stores: the columns are the same, only their
types differ (SQLite keeps ids and instants as text, Postgres as ``uuid`` and
``timestamptz``), so each store passes how it writes an id and an instant."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pactmesh_contracts.envelope import Principal
from pactmesh_contracts.events import ReviewPriority

from pactmesh_hitl.domain.reviews import HistoryEntry, Review, ReviewState

COLUMNS = (
    "review_id, workflow_id, workflow, tenant, rule, summary, action_type, action, role,"
    " expires_at, state, requested_at, attempt, principal, request_event_id, decision,"
    " decided_by, decided_at, comment, edited_action, priority, claimed_by, claimed_until,"
    " separation_of_duties"
)
"""Every column a :class:`Review` is read from or written to, in row order."""
COLUMN_COUNT = len(COLUMNS.split(","))


def utc_text(moment: datetime) -> str:
    """An instant as UTC ISO-8601 text of fixed precision: comparing and sorting the text
    is comparing the instants (SQLite's columns, and history particulars everywhere)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def review_of(row: Any) -> Review:
    """The review a row (in :data:`COLUMNS` order) holds, from either store."""
    return Review(
        review_id=_uuid(row[0]),
        workflow_id=_uuid(row[1]),
        workflow=row[2],
        tenant=row[3],
        rule=row[4],
        summary=row[5],
        action_type=row[6],
        proposed_action=json.loads(row[7]),
        required_role=row[8],
        expires_at=_time(row[9]),
        state=ReviewState(row[10]),
        requested_at=_time(row[11]),
        attempt=row[12],
        principal=Principal.model_validate_json(row[13]) if row[13] else None,
        request_event_id=_uuid(row[14]) if row[14] else None,
        decision=row[15],
        decided_by=row[16],
        decided_at=_time(row[17]) if row[17] else None,
        comment=row[18],
        edited_action=json.loads(row[19]) if row[19] else None,
        priority=ReviewPriority(row[20]),
        claimed_by=row[21],
        claimed_until=_time(row[22]) if row[22] else None,
        separation_of_duties=bool(row[23]),
    )


def row_of(
    review: Review, *, ident: Callable[[uuid.UUID], Any], instant: Callable[[datetime], Any]
) -> tuple[Any, ...]:
    """``review`` as a row in :data:`COLUMNS` order, ids and instants as the store
    writes them."""

    def maybe(value: datetime | None) -> Any:
        return None if value is None else instant(value)

    return (
        ident(review.review_id),
        ident(review.workflow_id),
        review.workflow,
        review.tenant,
        review.rule,
        review.summary,
        review.action_type,
        json.dumps(review.proposed_action),
        review.required_role,
        instant(review.expires_at),
        review.state.value,
        instant(review.requested_at),
        review.attempt,
        review.principal.model_dump_json() if review.principal else None,
        ident(review.request_event_id) if review.request_event_id else None,
        review.decision,
        review.decided_by,
        maybe(review.decided_at),
        review.comment,
        _json(review.edited_action),
        review.priority.value,
        review.claimed_by,
        maybe(review.claimed_until),
        review.separation_of_duties,
    )


def requested_detail(review: Review) -> dict[str, Any]:
    """The ``requested`` history entry's particulars."""
    return {
        "rule": review.rule,
        "required_role": review.required_role,
        "priority": review.priority.value,
        "expires_at": utc_text(review.expires_at),
        "attempt": review.attempt,
    }


def history_of(row: Any) -> HistoryEntry:
    """A history entry from its ``at, actor, action, detail`` row."""
    at, actor, action, detail = row
    return HistoryEntry(at=_time(at), actor=actor, action=action, detail=json.loads(detail))
