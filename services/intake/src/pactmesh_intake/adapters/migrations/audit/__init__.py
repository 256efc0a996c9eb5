"""The audit store's schema (``adapters.audit_store``), as Alembic revisions of its own
(``versions/``), on SQLite and Postgres alike.

On SQLite the audit store is a file of its own (``intake-audit.sqlite3``) beside the
request store's, so its revisions are a set of their own with their own version table,
``alembic_version_intake_audit`` (on Postgres both sets share intake's database).
Revision 0001 is the tables as the store created them before Alembic, on either
database: such a file or database is stamped at it, then upgraded.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from pactmesh_kit.stores import Migrations
from sqlalchemy.engine import Connection


def _legacy(conn: Connection) -> str | None:
    return "0001" if sa.inspect(conn).has_table("audit_events") else None


MIGRATIONS = Migrations(
    Path(__file__).parent,
    "alembic_version_intake_audit",
    legacy=_legacy,
    legacy_dialects=("sqlite", "postgresql"),
)
"""The audit store's migrations."""
