"""Requests and their status history.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from pactmesh_kit.stores.migrations import Timestamp, Uuid

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "requests",
        sa.Column("request_id", Uuid, primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("channel", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("workflow", sa.Text),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )
    # Postgres has no rowid: ``seq`` orders the entries of one instant as they came.
    ordering = (
        [sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False)] if _postgres() else []
    )
    op.create_table(
        "history",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("request_id", Uuid, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("service", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        *ordering,
    )
    op.create_index("history_by_request", "history", ["request_id", "at"])


def _postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"
