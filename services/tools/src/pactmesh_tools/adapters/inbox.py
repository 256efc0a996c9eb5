"""Where the tools service keeps its inbox: Postgres when ``PACTMESH_POSTGRES_URL`` is
set (one inbox for every instance: after a rebalance, or when an instance dies, another
runs its pending calls), else the SQLite file ``tools-inbox.sqlite3`` in the data dir."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from pactmesh_tools.adapters.postgres_inbox import open_postgres_inbox
from pactmesh_tools.adapters.sqlite_inbox import open_sqlite_inbox
from pactmesh_tools.domain.inbox import Inbox
from pactmesh_tools.settings import Settings

INBOX_FILE = "tools-inbox.sqlite3"


def open_inbox(
    settings: Settings, *, clock: Callable[[], float] = time.time
) -> AbstractAsyncContextManager[Inbox]:
    """The inbox ``settings`` select, migrated and open until exit; ``clock`` is
    wall-clock seconds (retention and leases hold across restarts and instances)."""
    if (url := settings.postgres) is not None:
        return open_postgres_inbox(url, pool_size=settings.postgres_pool_size, clock=clock)
    return open_sqlite_inbox(settings.data_dir / INBOX_FILE, clock=clock)
