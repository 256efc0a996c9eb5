"""Where the delivery service keeps its ledger, webhooks and their outbox: Postgres when
``PACTMESH_POSTGRES_URL`` is set (any number of instances), else the SQLite file
``delivery.sqlite3`` in the data dir."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from pactmesh_delivery.adapters.postgres_store import open_postgres_stores
from pactmesh_delivery.adapters.sqlite_store import open_sqlite_stores
from pactmesh_delivery.domain.results import Ledger
from pactmesh_delivery.domain.webhooks import WebhookOutbox
from pactmesh_delivery.settings import Settings

SQLITE_FILE = "delivery.sqlite3"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stores:
    """The ledger and the webhook store, on one database."""

    ledger: Ledger
    webhooks: WebhookOutbox


@asynccontextmanager
async def open_stores(settings: Settings) -> AsyncIterator[Stores]:
    """The stores ``settings`` select, migrated and open until exit."""
    box = settings.secret_box()
    async with AsyncExitStack() as stack:
        if (url := settings.postgres) is not None:
            if settings.webhook_secret_keys is None:
                logger.warning(
                    "webhook secrets are sealed with a key generated in %s: every instance"
                    " on this database needs the same key (PACTMESH_DELIVERY_WEBHOOK_SECRET_KEYS)",
                    settings.data_dir,
                )
            opened = open_postgres_stores(url, box=box, pool_size=settings.postgres_pool_size)
            ledger, webhooks = await stack.enter_async_context(opened)
            yield Stores(ledger, webhooks)
        else:
            sqlite = open_sqlite_stores(settings.data_dir / SQLITE_FILE, box=box)
            ledger_, webhooks_ = await stack.enter_async_context(sqlite)
            yield Stores(ledger_, webhooks_)
