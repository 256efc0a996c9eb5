"""The requests the mesh accepted: each one's tenant and principal, as intake verified them
(the table the kit created before it used Alembic).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

from pactmesh_kit.stores.migrations import Uuid

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "accepted_requests",
        sa.Column("workflow_id", Uuid, primary_key=True),
        sa.Column("tenant", sa.Text, nullable=False),
        sa.Column("principal", sa.Text, nullable=False),
        sa.Column("accepted_at", sa.Float, nullable=False),
    )
