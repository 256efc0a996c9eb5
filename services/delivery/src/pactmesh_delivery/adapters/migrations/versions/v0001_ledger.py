"""The ledger of delivered results, by workflow.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op
from pactmesh_kit.stores.migrations import Timestamp, Uuid

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "delivered",
        sa.Column("workflow_id", Uuid, primary_key=True),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("event_id", Uuid, nullable=False),
        sa.Column("at", Timestamp, nullable=False),
    )
