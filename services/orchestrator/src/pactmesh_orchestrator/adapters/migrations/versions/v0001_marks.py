"""Outbox marks: which checkpoints' events were published (under the name each database
had before Alembic).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    name = "pactmesh_outbox" if op.get_bind().dialect.name == "postgresql" else "published"
    op.create_table(
        name,
        sa.Column("thread_id", sa.Text, primary_key=True),
        sa.Column("checkpoint_id", sa.Text, primary_key=True),
    )
