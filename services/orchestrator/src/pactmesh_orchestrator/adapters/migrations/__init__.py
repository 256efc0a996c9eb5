"""The orchestrator's own tables (its outbox marks), as Alembic revisions
(``versions/``), on SQLite and Postgres alike. The checkpoints' tables are LangGraph's,
created and migrated by its checkpointers' own versioned ``setup()``.

Revision 0001 is the marks table as the orchestrator created it before Alembic (named
``published`` in the SQLite file, ``pactmesh_outbox`` in Postgres): a database holding
it is stamped at 0001, then upgraded.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from pactmesh_kit.stores import Migrations
from sqlalchemy.engine import Connection

LEGACY_TABLE = {"sqlite": "published", "postgresql": "pactmesh_outbox"}
"""The marks table's name before revision 0002, per database."""


def _legacy(conn: Connection) -> str | None:
    table = LEGACY_TABLE[conn.dialect.name]
    return "0001" if sa.inspect(conn).has_table(table) else None


MIGRATIONS = Migrations(
    Path(__file__).parent,
    "alembic_version_orchestrator",
    legacy=_legacy,
    legacy_dialects=("sqlite", "postgresql"),
)
"""The orchestrator's migrations; the version lives in ``alembic_version_orchestrator``."""
