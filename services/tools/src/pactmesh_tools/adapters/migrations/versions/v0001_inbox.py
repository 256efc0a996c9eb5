"""The inbox of tool calls, pending until answered.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from pactmesh_kit.stores.migrations import Serial, Uuid

revision = "0001"
down_revision = None


def upgrade() -> None:
    # AUTOINCREMENT on SQLite, not a plain rowid: a rowid may be reused once the newest
    # row is pruned, and calls are taken in ``seq`` order.
    op.create_table(
        "inbox",
        sa.Column("seq", Serial, primary_key=True, autoincrement=True),
        sa.Column("call_id", Uuid, nullable=False, unique=True),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("traceparent", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("done_at", sa.Float),
        sa.CheckConstraint("status IN ('pending', 'done')"),
        sqlite_autoincrement=True,
    )
    pending, done = sa.text("status = 'pending'"), sa.text("status = 'done'")
    op.create_index(
        "inbox_pending", "inbox", ["seq"], sqlite_where=pending, postgresql_where=pending
    )
    op.create_index("inbox_done", "inbox", ["done_at"], sqlite_where=done, postgresql_where=done)
