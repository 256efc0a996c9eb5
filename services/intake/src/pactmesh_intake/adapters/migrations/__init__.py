"""Intake's schema, as Alembic revisions (``versions/``), on SQLite and Postgres alike.

Revisions 0001 and 0002 are the two formats intake's SQLite file had before Alembic
(``PRAGMA user_version`` 1 and 2, and version 0 with the tables of 1): such a file is
stamped at its revision, then upgraded.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from pactmesh_kit.stores import Migrations
from sqlalchemy.engine import Connection


def _legacy(conn: Connection) -> str | None:
    version = int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
    if version == 0 and sa.inspect(conn).has_table("requests"):
        version = 1  # written before the file was versioned: the tables of version 1
    return f"{version:04d}" if version else None


MIGRATIONS = Migrations(Path(__file__).parent, "alembic_version_intake", legacy=_legacy)
"""Intake's migrations; the version lives in ``alembic_version_intake``."""
