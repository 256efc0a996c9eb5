"""The delivery service's schema, as Alembic revisions (``versions/``), on SQLite and
Postgres alike.

Revisions 0001 (the ledger) and 0002 (webhooks and their outbox) are what the delivery
service's SQLite file held before Alembic, created table by table at start-up: such a
file is stamped at the revision its tables match, then upgraded.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from pactmesh_kit.stores import Migrations
from sqlalchemy.engine import Connection


def _legacy(conn: Connection) -> str | None:
    inspector = sa.inspect(conn)
    if inspector.has_table("webhooks"):
        if not inspector.has_table("delivered"):  # the ledger, never opened: as 0001 made it
            conn.exec_driver_sql(
                "CREATE TABLE delivered (workflow_id TEXT PRIMARY KEY,"
                " topic TEXT NOT NULL, event_id TEXT NOT NULL, at TEXT NOT NULL)"
            )
        return "0002"
    return "0001" if inspector.has_table("delivered") else None


MIGRATIONS = Migrations(Path(__file__).parent, "alembic_version_delivery", legacy=_legacy)
"""The delivery service's migrations; the version lives in ``alembic_version_delivery``."""
