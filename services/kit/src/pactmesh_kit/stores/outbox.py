"""The transactional outbox: an event that must follow a write is stored in the write's
own transaction, then published; whatever is left unpublished, a relay publishes.

The writer inserts the event into its outbox table with ``publish_after`` a lease ahead
(:meth:`Relay.lease_until`) and, once committed, publishes it itself through the
:class:`Relay` (no wait for a poll). A successful publish queues the row for removal,
which the relay's loop does in one statement per round rather than one per event. A
publish that fails, or whose outcome is unknown (an acknowledgement timeout after the
broker may have written it), or a crash between commit and publish, leaves the row: once
its lease has passed, the relay of any instance claims it (``FOR UPDATE SKIP LOCKED`` on
Postgres, so two relays never take the same row; on SQLite one instance owns the file)
and publishes the very same event again, same event id. Consumers are idempotent by
event or workflow id, so an event published twice (its first publish succeeded after
all) changes nothing; an event is never lost.

Written here rather than taken from PyPI: the outbox libraries found either bring their
own ORM and message bus (SQLAlchemy sessions, Redis Streams) or publish through their
own Kafka producer, not the service's FastStream one with its tracing and topic
registry; what is needed is one table, two statements and the loop below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiosqlite
from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.topics import Topic

from pactmesh_kit.stores.postgres import Pool
from pactmesh_kit.stores.settings import StoreSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboxEntry:
    """An event waiting in an outbox table."""

    event_id: uuid.UUID
    event: str
    """The envelope as JSON, exactly as it is to be published."""


class Outbox(Protocol):
    """An outbox table, as the relay uses it."""

    async def claim_unpublished(
        self, *, now: float, lease_until: float, limit: int
    ) -> list[OutboxEntry]:
        """Up to ``limit`` events whose lease has passed at ``now``, oldest first, each
        leased again until ``lease_until`` (no other relay takes it meanwhile)."""
        ...

    async def remove_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        """Forget events that were published."""
        ...


class Publisher(Protocol):
    """Publishes one event and waits for the broker (``EventPublisher`` does)."""

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish ``event``."""
        ...


class Relay:
    """Publishes a service's outbox events: at once for the writer, later for the rest.

    It is also the publisher the writer's domain code is handed: :meth:`publish` is the
    prompt publish after a commit, and raises like any publisher when it fails (the row
    stays for the loop that :meth:`running` runs).
    """

    def __init__(
        self,
        publisher: Publisher,
        *,
        topic: Topic,
        lease_s: float,
        interval_s: float,
        batch: int = 200,
        clock: Callable[[], float] = time.time,
        ready: Callable[[], bool] = lambda: True,
    ) -> None:
        """``ready`` says when events can be published (the broker has started): the
        relay waits for it rather than failing, and leasing again, its first round."""
        self._publisher = publisher
        self._topic = topic
        self._lease_s = lease_s
        self._interval_s = interval_s
        self._batch = batch
        self._clock = clock
        self._ready = ready
        self._published: list[uuid.UUID] = []

    @classmethod
    def configured(
        cls,
        publisher: Publisher,
        *,
        topic: Topic,
        settings: StoreSettings,
        ready: Callable[[], bool],
    ) -> Relay:
        """The relay ``settings`` describe (``PACTMESH_OUTBOX_LEASE_S``, ``_INTERVAL_S``)."""
        return cls(
            publisher,
            topic=topic,
            lease_s=settings.outbox_lease_s,
            interval_s=settings.outbox_interval_s,
            ready=ready,
        )

    def lease_until(self) -> float:
        """The ``publish_after`` a writer gives a new row: the relay leaves it alone that
        long, while the writer publishes it."""
        return self._clock() + self._lease_s

    async def publish(self, event: Envelope[Any]) -> None:
        """Publish an event just committed to the outbox; its row is removed later."""
        await self._publisher.publish(event)
        self._published.append(event.event_id)

    async def relay(self, outbox: Outbox) -> int:
        """Remove what was published, then publish every event whose lease has passed;
        how many this round published."""
        await self._flush(outbox)
        relayed = 0
        while True:
            now = self._clock()
            entries = await outbox.claim_unpublished(
                now=now, lease_until=now + self._lease_s, limit=self._batch
            )
            outcomes = await asyncio.gather(
                *(self.publish(self._decoded(e)) for e in entries), return_exceptions=True
            )
            failed = [o for o in outcomes if isinstance(o, BaseException)]
            relayed += len(entries) - len(failed)
            await self._flush(outbox)
            if failed:
                logger.warning(
                    "relaying %d outbox event(s) failed (%r); they are tried again after"
                    " their lease",
                    len(failed),
                    failed[0],
                )
            if failed or len(entries) < self._batch:
                if relayed:
                    logger.info("relayed %d event(s) left in the outbox", relayed)
                return relayed

    @asynccontextmanager
    async def running(self, outbox: Outbox) -> AsyncIterator[None]:
        """Relay every ``interval_s`` until exit; on exit, remove what was published."""
        task = asyncio.create_task(self._loop(outbox), name=f"outbox-{self._topic.name}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await self._flush(outbox)

    async def _loop(self, outbox: Outbox) -> None:
        while not self._ready():  # noqa: ASYNC110 - the broker has a flag, not an event
            await asyncio.sleep(min(self._interval_s, 0.05))
        while True:
            try:
                await self.relay(outbox)
            except Exception:
                logger.exception("outbox relay round failed; trying again")
            await asyncio.sleep(self._interval_s)

    async def _flush(self, outbox: Outbox) -> None:
        published, self._published = self._published, []
        if not published:
            return
        try:
            await outbox.remove_published(published)
        except BaseException:
            self._published[:0] = published
            raise

    def _decoded(self, entry: OutboxEntry) -> Envelope[Any]:
        event: Envelope[Any] = self._topic.adapter.validate_json(entry.event)
        return event


class SqliteOutbox:
    """An outbox table in a SQLite store's file, on the store's connection."""

    def __init__(
        self, conn: aiosqlite.Connection, table: str, *, lock: asyncio.Lock | None = None
    ) -> None:
        """``lock`` is the store's, when its connection runs multi-statement transactions
        that these statements must not fall into."""
        self._conn = conn
        self._lock = lock or asyncio.Lock()
        self._claim = (
            f"UPDATE {table} SET publish_after = ? WHERE event_id IN (SELECT event_id"
            f" FROM {table} WHERE publish_after <= ? ORDER BY publish_after LIMIT ?)"
            " RETURNING event_id, event"
        )
        self._remove = f"DELETE FROM {table} WHERE event_id = ?"
        self._release = f"UPDATE {table} SET publish_after = 0"

    async def claim_unpublished(
        self, *, now: float, lease_until: float, limit: int
    ) -> list[OutboxEntry]:
        async with self._lock:
            async with self._conn.execute(self._claim, (lease_until, now, limit)) as cursor:
                rows = list(await cursor.fetchall())
            await self._conn.commit()
        return [OutboxEntry(uuid.UUID(event_id), event) for event_id, event in rows]

    async def remove_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        async with self._lock:
            await self._conn.executemany(self._remove, [(str(e),) for e in event_ids])
            await self._conn.commit()

    async def release(self) -> None:
        """Make every event due now: on opening the file, whatever is left was its
        previous process's (one instance owns a SQLite file), leased to a writer that is
        gone, and waits for nothing."""
        async with self._lock:
            await self._conn.execute(self._release)
            await self._conn.commit()


class PostgresOutbox:
    """An outbox table in a Postgres store, on the store's pool."""

    def __init__(self, pool: Pool, table: str) -> None:
        self._pool = pool
        self._claim = (
            f"UPDATE {table} SET publish_after = %s WHERE event_id IN (SELECT event_id"
            f" FROM {table} WHERE publish_after <= %s ORDER BY publish_after LIMIT %s"
            " FOR UPDATE SKIP LOCKED) RETURNING event_id, event"
        )
        self._remove = f"DELETE FROM {table} WHERE event_id = ANY(%s)"

    async def claim_unpublished(
        self, *, now: float, lease_until: float, limit: int
    ) -> list[OutboxEntry]:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(self._claim, (lease_until, now, limit))
            rows = await cursor.fetchall()
        return [OutboxEntry(event_id, event) for event_id, event in rows]

    async def remove_published(self, event_ids: Sequence[uuid.UUID]) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(self._remove, (list(event_ids),))
