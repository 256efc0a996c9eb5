"""What retention looks finished deliveries and ledger entries up by.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    finished = sa.text("state <> 'pending'")
    op.create_index(
        "deliveries_finished",
        "webhook_deliveries",
        ["updated_at"],
        sqlite_where=finished,
        postgresql_where=finished,
    )
    op.create_index("delivered_by_age", "delivered", ["at"])
