"""One name for the marks table on every database.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    old = "pactmesh_outbox" if op.get_bind().dialect.name == "postgresql" else "published"
    op.rename_table(old, "outbox_marks")
