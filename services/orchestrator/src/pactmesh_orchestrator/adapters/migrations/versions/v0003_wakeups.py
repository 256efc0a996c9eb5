"""Wake-up rows: each run's durable timer (``pactmesh_orchestrator.domain.timers``).

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "wakeups",
        sa.Column("thread_id", sa.Text, primary_key=True),
        sa.Column("due_at", sa.Float, nullable=False),  # seconds since the epoch
        sa.Column("wake", sa.Text, nullable=False),
        sa.Column("pause", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("wakeups_due_at", "wakeups", ["due_at"])
