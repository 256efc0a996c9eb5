"""Leases: a pending call is run by the instance that claimed it until its lease ends.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.add_column("inbox", sa.Column("lease_until", sa.Float))
