"""Where intake keeps its requests: Postgres when ``PACTMESH_POSTGRES_URL`` is set (any
number of instances), else the SQLite file ``intake.sqlite3`` in the data dir."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from pactmesh_intake.adapters.postgres_store import open_postgres_store
from pactmesh_intake.adapters.sqlite_store import open_sqlite_store
from pactmesh_intake.domain.requests import RequestStore
from pactmesh_intake.settings import Settings

SQLITE_FILE = "intake.sqlite3"


def open_store(settings: Settings) -> AbstractAsyncContextManager[RequestStore]:
    """The store ``settings`` select, migrated and open until exit."""
    if (url := settings.postgres) is not None:
        return open_postgres_store(
            url, pool_size=settings.postgres_pool_size, lease_s=settings.outbox_lease_s
        )
    return open_sqlite_store(settings.data_dir / SQLITE_FILE, lease_s=settings.outbox_lease_s)
