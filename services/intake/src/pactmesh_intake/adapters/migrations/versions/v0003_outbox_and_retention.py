"""The outbox of accepted requests not yet known to be published, and what retention
looks requests up by.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op
from pactmesh_kit.stores.migrations import Uuid

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "request_outbox",
        sa.Column("event_id", Uuid, primary_key=True),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("publish_after", sa.Float, nullable=False),
    )
    op.create_index("request_outbox_due", "request_outbox", ["publish_after"])
    op.create_index("requests_by_update", "requests", ["updated_at"])
