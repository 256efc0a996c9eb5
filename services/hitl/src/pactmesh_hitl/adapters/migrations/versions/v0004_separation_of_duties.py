"""Whether a review's gate separates duties: the person its run acts for may not decide
it (gates.toml ``separation_of_duties``, on unless a gate turns it off). Reviews asked
before this revision separate duties.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.add_column(
        "reviews",
        sa.Column("separation_of_duties", sa.Boolean, nullable=False, server_default=sa.true()),
    )
