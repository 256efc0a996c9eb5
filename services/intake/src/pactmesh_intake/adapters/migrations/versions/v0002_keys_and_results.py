"""What each request was (its fingerprint), clients' idempotency keys, results.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from pactmesh_kit.stores.migrations import Timestamp, Uuid

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("requests", sa.Column("fingerprint", sa.Text))
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant", sa.Text, primary_key=True),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("request_id", Uuid, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("idempotency_keys_by_age", "idempotency_keys", ["created_at"])
    op.create_table(
        "results",
        sa.Column("request_id", Uuid, primary_key=True),
        sa.Column("result", sa.Text, nullable=False),
    )
