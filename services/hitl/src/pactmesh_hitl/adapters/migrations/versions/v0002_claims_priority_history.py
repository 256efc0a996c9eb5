"""Priorities, claims, and a history of everything that happened to a review (filled in
for the reviews already there: requested, then decided or expired).

Revision ID: 0002
"""

import json

import sqlalchemy as sa
from alembic import op
from pactmesh_kit.stores.migrations import Serial, Timestamp, Uuid

revision = "0002"
down_revision = "0001"

_COLUMNS = (
    "review_id",
    "rule",
    "role",
    "attempt",
    "requested_at",
    "state",
    "decided_at",
    "decided_by",
    "decision",
    "comment",
)
_reviews = sa.table("reviews", *(sa.column(name) for name in _COLUMNS))


def upgrade() -> None:
    op.add_column(
        "reviews", sa.Column("priority", sa.Text, nullable=False, server_default="normal")
    )
    op.add_column("reviews", sa.Column("claimed_by", sa.Text))
    op.add_column("reviews", sa.Column("claimed_until", Timestamp))
    op.create_index(
        "reviews_by_state", "reviews", ["state", "tenant", "requested_at"], if_not_exists=True
    )
    op.create_index("reviews_by_workflow", "reviews", ["workflow_id"], if_not_exists=True)
    op.create_index("reviews_by_deadline", "reviews", ["state", "expires_at"], if_not_exists=True)
    history = op.create_table(
        "review_history",
        sa.Column("seq", Serial, primary_key=True, autoincrement=True),
        sa.Column("review_id", Uuid, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("review_history_by_review", "review_history", ["review_id", "seq"])
    rows = op.get_bind().execute(sa.select(_reviews)).mappings().all()
    entries = [_requested(r) for r in sorted(rows, key=lambda r: r["requested_at"])]
    decided = sorted((r for r in rows if r["decided_at"]), key=lambda r: r["decided_at"])
    entries += [_settled(r) for r in decided]
    if entries:
        op.bulk_insert(history, entries)


def _requested(review: sa.RowMapping) -> dict[str, object]:
    detail = {"rule": review["rule"], "required_role": review["role"], "attempt": review["attempt"]}
    return {
        "review_id": review["review_id"],
        "at": review["requested_at"],
        "actor": "workflow",
        "action": "requested",
        "detail": json.dumps(detail),
    }


def _settled(review: sa.RowMapping) -> dict[str, object]:
    return {
        "review_id": review["review_id"],
        "at": review["decided_at"],
        "actor": review["decided_by"],
        "action": "expired" if review["state"] == "expired" else "decided",
        "detail": json.dumps({"decision": review["decision"], "comment": review["comment"]}),
    }
