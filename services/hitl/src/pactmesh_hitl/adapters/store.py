"""Where hitl keeps its reviews: Postgres when ``PACTMESH_POSTGRES_URL`` is set (any
number of instances), else the SQLite file ``hitl.sqlite3`` in the data dir."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from pactmesh_hitl.adapters.postgres_store import open_postgres_store
from pactmesh_hitl.adapters.sqlite_store import open_sqlite_store
from pactmesh_hitl.domain.reviews import ReviewStore
from pactmesh_hitl.settings import Settings

SQLITE_FILE = "hitl.sqlite3"


def open_store(settings: Settings) -> AbstractAsyncContextManager[ReviewStore]:
    """The store ``settings`` select, migrated and open until exit."""
    if (url := settings.postgres) is not None:
        return open_postgres_store(
            url, pool_size=settings.postgres_pool_size, lease_s=settings.outbox_lease_s
        )
    return open_sqlite_store(settings.data_dir / SQLITE_FILE, lease_s=settings.outbox_lease_s)
