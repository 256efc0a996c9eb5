"""What retention looks accepted requests up by.

Revision ID: 0002
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_index("accepted_requests_by_age", "accepted_requests", ["accepted_at"])
