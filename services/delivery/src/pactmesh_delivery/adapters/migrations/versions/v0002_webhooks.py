"""Webhooks, and their deliveries: the outbox the dispatcher works through, one row per
(webhook, result).

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from pactmesh_kit.stores.migrations import Uuid

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "webhooks",
        sa.Column("id", Uuid, primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("workflows", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("webhooks_by_tenant", "webhooks", ["tenant", "created_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", Uuid, primary_key=True),
        sa.Column(
            "webhook_id",
            Uuid,
            sa.ForeignKey("webhooks.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("result_event_id", Uuid, nullable=False),
        sa.Column("workflow_id", Uuid, nullable=False),
        sa.Column("workflow", sa.Text, nullable=False),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("record_key", sa.LargeBinary),
        sa.Column("record_headers", sa.Text, nullable=False),
        sa.Column("source_topic", sa.Text, nullable=False),
        sa.Column("source_partition", sa.Integer, nullable=False),
        sa.Column("source_offset", sa.BigInteger, nullable=False),
        sa.Column("trace_context", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("next_attempt_at", sa.Float),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("delivered_at", sa.Float),
        sa.UniqueConstraint("webhook_id", "result_event_id"),
    )
    pending = sa.text("state = 'pending'")
    op.create_index(
        "deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        sqlite_where=pending,
        postgresql_where=pending,
    )
    op.create_index("deliveries_by_webhook", "webhook_deliveries", ["webhook_id", "created_at"])
