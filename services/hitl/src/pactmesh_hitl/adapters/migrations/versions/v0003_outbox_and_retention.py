"""The outbox of decisions and expiries not yet known to be published, and when each
review was settled (decided, expired, escalated or withdrawn), which retention reads.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op
from pactmesh_kit.stores.migrations import Timestamp, Uuid

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "review_outbox",
        sa.Column("event_id", Uuid, primary_key=True),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("publish_after", sa.Float, nullable=False),
    )
    op.create_index("review_outbox_due", "review_outbox", ["publish_after"])
    op.add_column("reviews", sa.Column("settled_at", Timestamp))
    # Reviews settled before this revision count from their decision, or their request.
    op.execute(
        "UPDATE reviews SET settled_at = COALESCE(decided_at, requested_at)"
        " WHERE state <> 'pending'"
    )
    op.create_index("reviews_by_settling", "reviews", ["settled_at"])
