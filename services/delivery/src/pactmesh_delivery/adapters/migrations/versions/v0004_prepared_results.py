"""Results prepared in a Kafka transaction: where the result sits in its topic, and
whether that transaction is known to have committed.

Revision ID: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("delivered") as table:
        # Rows written before: results published and recorded after, so settled.
        table.add_column(sa.Column("settled", sa.Boolean, nullable=False, server_default=sa.true()))
        table.add_column(sa.Column("result_partition", sa.Integer, nullable=True))
        table.add_column(sa.Column("result_offset", sa.BigInteger, nullable=True))
