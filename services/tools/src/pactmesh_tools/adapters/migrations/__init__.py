"""The tools service's schema (its inbox), as Alembic revisions (``versions/``), on
SQLite and Postgres alike.

Revision 0001 is the inbox's format before Alembic (``PRAGMA user_version`` 1): such a
file is stamped at it, then upgraded.
"""

from __future__ import annotations

from pathlib import Path

from pactmesh_kit.stores import Migrations
from sqlalchemy.engine import Connection


def _legacy(conn: Connection) -> str | None:
    version = int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
    return "0001" if version == 1 else None


MIGRATIONS = Migrations(Path(__file__).parent, "alembic_version_tools", legacy=_legacy)
"""The tools service's migrations; the version lives in ``alembic_version_tools``."""
