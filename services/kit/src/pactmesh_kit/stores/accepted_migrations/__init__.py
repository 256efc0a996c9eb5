"""The schema of the accepted requests (``pactmesh_kit.provenance``), as Alembic
revisions (``versions/``) of the kit's own, on SQLite and Postgres alike.

The services that check events against their requests (tools, delivery) run these at
start-up; on one Postgres database they share the table (every instance of either
service records the same requests, as intake accepted them) and its version table,
``alembic_version_kit_accepted_requests``. Revision 0001 is the table as the kit created
it before Alembic: such a SQLite file is stamped at it, then upgraded.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pactmesh_kit.stores.migrations import Migrations


def _legacy(conn: Connection) -> str | None:
    return "0001" if sa.inspect(conn).has_table("accepted_requests") else None


MIGRATIONS = Migrations(
    Path(__file__).parent, "alembic_version_kit_accepted_requests", legacy=_legacy
)
"""The accepted requests' migrations."""
