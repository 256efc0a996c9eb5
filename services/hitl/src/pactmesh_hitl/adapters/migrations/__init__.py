"""hitl's schema, as Alembic revisions (``versions/``), on SQLite and Postgres alike.

Revisions 0001 and 0002 are the formats hitl's SQLite file had before Alembic
(``PRAGMA user_version`` 2 and 3): such a file is stamped at its revision, then upgraded.
A file of an older format only ever held development data and is set aside (its tables
dropped), as the previous release did.
"""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from pactmesh_kit.stores import Migrations
from sqlalchemy.engine import Connection

logger = logging.getLogger(__name__)

_REVISION_OF_USER_VERSION = {2: "0001", 3: "0002"}


def _legacy(conn: Connection) -> str | None:
    version = int(conn.exec_driver_sql("PRAGMA user_version").scalar_one())
    if version in _REVISION_OF_USER_VERSION:
        return _REVISION_OF_USER_VERSION[version]
    tables = [t for t in ("reviews", "review_history") if sa.inspect(conn).has_table(t)]
    if tables:
        logger.warning("setting aside hitl tables of format %d (development data)", version)
        for table in tables:
            conn.exec_driver_sql(f"DROP TABLE {table}")
    return None


MIGRATIONS = Migrations(Path(__file__).parent, "alembic_version_hitl", legacy=_legacy)
"""hitl's migrations; the version lives in ``alembic_version_hitl``."""
