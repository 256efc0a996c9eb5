"""Every audit event whole, and the daily usage per tenant, workflow and model.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from pactmesh_kit.stores.migrations import Timestamp, Uuid

revision = "0001"
down_revision = None

Day = sa.Date().with_variant(sa.Text(), "sqlite")
"""A UTC day: ``date`` on Postgres, ISO-8601 text on SQLite."""


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("event_id", Uuid, primary_key=True),
        sa.Column("request_id", Uuid, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("occurred_at", Timestamp, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index("audit_events_by_request", "audit_events", ["request_id", "occurred_at"])
    op.create_index("audit_events_by_age", "audit_events", ["occurred_at"])
    op.create_table(
        "usage_daily",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("day", Day, primary_key=True),
        sa.Column("workflow", sa.Text, primary_key=True),
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("calls", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.Float(53), nullable=False),
    )
