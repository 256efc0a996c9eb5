"""Reviews, with their decision.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from pactmesh_kit.stores.migrations import Timestamp, Uuid

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("review_id", Uuid, primary_key=True),
        sa.Column("workflow_id", Uuid, nullable=False),
        sa.Column("workflow", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("action_type", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("requested_at", Timestamp, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("principal", sa.Text),
        sa.Column("request_event_id", Uuid),
        sa.Column("decision", sa.Text),
        sa.Column("decided_by", sa.Text),
        sa.Column("decided_at", Timestamp),
        sa.Column("comment", sa.Text),
        sa.Column("edited_action", sa.Text),
    )
