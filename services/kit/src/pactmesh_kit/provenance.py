"""What intake vouched for: the tenant and principal of every request the mesh accepted.

A consumer cannot tell who produced a Kafka record. On a secured cluster the ACL table
(``pactmesh_kit.acls``) says who can have: only intake writes ``requests.accepted``, and
only after verifying the request's bearer token (HTTP's ``Authorization`` header, or the
inbound record's), so each accepted request's tenant and principal are what a token
proved. A service whose action reaches outside the mesh checks the event asking for it
against that request: the tools service before running a tool (a call forged onto
``tool.calls`` with a self-granted scope acts for a principal no token proved), delivery
before handing out a result (a completion forged for another tenant names a request of
another tenant, or none). This holds whoever wrote the event: a plaintext development
cluster has no ACLs, and a service's bug is no credential; forging an accepted request
itself takes intake's Kafka credentials.

Each such service keeps the accepted requests it has read (``Provenance.opened``),
fed by a subscriber of ``requests.accepted`` in its own consumer group
(``Provenance.subscribe``): in Postgres when ``PACTMESH_POSTGRES_URL`` is set, one table
that every instance of the service shares (the instance handed a tool call may not be
the one that read its request), else in a SQLite file of the data dir
(``pactmesh_kit.stores.accepted``). An event can outrun its request's record (two
subscriptions, two consumers, perhaps two instances), so an unknown request is waited
for, up to ``wait_s``. Then the event is refused only if the service's consumer group of
``requests.accepted`` has handled every record written before the wait began: the
request's acceptance precedes every event of it, so it would have been read. While the
group is behind (an instance killed and its partitions not yet handed over, a backlog),
``RequestNotReadYet`` is raised instead: a dependency's delay, not bad input, which the
subscriber retries with its backoff rather than dead-letter (the scale test's kill of
one instance of every service had a procurement run's tool call refused after 10 s, its
request's acceptance on a partition of the killed tools instance). Records are kept for
``retention_s`` (30 days by default, a month past the longest gate's deadline), then
pruned.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from pactmesh_contracts.envelope import Envelope, Principal
from pactmesh_contracts.events import RequestAccepted
from pactmesh_contracts.topics import REQUESTS_ACCEPTED

from pactmesh_kit.errors import NotReady
from pactmesh_kit.kafka import Kafka, KeyedSubscriber, Record
from pactmesh_kit.stores.accepted import AcceptedStore, open_accepted
from pactmesh_kit.stores.settings import StoreSettings

DEFAULT_WAIT_S = 10.0
"""How long an event naming a request not read yet waits for it."""
DEFAULT_RETENTION_S = 30 * 86_400.0
_PRUNE_EVERY_S = 3600.0


class RequestNotReadYet(NotReady):
    """An event's request is not recorded and the accepted requests are not all read yet:
    retried (an outage of a dependency), never refused for it."""

    code = "request_not_read_yet"


@dataclass(frozen=True)
class Vouched:
    """A request as intake accepted it."""

    tenant: str
    principal: Principal


def _who(principal: Principal) -> str:
    return f"{principal.subject!r} (roles {list(principal.roles)}, scopes {list(principal.scopes)})"


class AcceptedRequests:
    """The accepted requests one service has read (its instances, on Postgres)."""

    def __init__(
        self, store: AcceptedStore, *, retention_s: float, clock: Callable[[], float]
    ) -> None:
        self._store = store
        self._retention_s = retention_s
        self._clock = clock
        self._pruned_at = 0.0

    async def record(self, workflow_id: uuid.UUID, *, tenant: str, principal: Principal) -> None:
        """Remember a request (a redelivered one is kept as first recorded)."""
        now = self._clock()
        await self._store.insert(workflow_id, tenant=tenant, principal=principal, at=now)
        if now - self._pruned_at >= _PRUNE_EVERY_S:
            await self.prune(now=now)

    async def get(self, workflow_id: uuid.UUID) -> Vouched | None:
        """The request ``workflow_id`` names, if one was accepted (and not yet pruned)."""
        found = await self._store.find(workflow_id)
        return None if found is None else Vouched(tenant=found[0], principal=found[1])

    async def prune(self, *, now: float) -> int:
        """Forget requests accepted more than the retention ago; returns how many."""
        self._pruned_at = now
        return await self._store.delete_before(now - self._retention_s)


class Provenance:
    """Checks events against their requests as intake accepted them."""

    def __init__(
        self,
        *,
        wait_s: float = DEFAULT_WAIT_S,
        retention_s: float = DEFAULT_RETENTION_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.wait_s = wait_s
        self._retention_s = retention_s
        self._clock = clock
        self._requests: AcceptedRequests | None = None
        self._recorded = asyncio.Event()
        self._reader: KeyedSubscriber | None = None

    @property
    def requests(self) -> AcceptedRequests:
        """The open record; ``NotReady`` outside ``opened``."""
        if self._requests is None:
            raise NotReady("the accepted requests are not open")
        return self._requests

    @asynccontextmanager
    async def opened(self, settings: StoreSettings) -> AsyncIterator[AcceptedRequests]:
        """Open (migrating if needed) the record ``settings`` select, for the block's
        duration."""
        async with open_accepted(settings) as store:
            self._requests = AcceptedRequests(
                store, retention_s=self._retention_s, clock=self._clock
            )
            try:
                yield self._requests
            finally:
                self._requests = None

    def subscribe(self, kafka: Kafka) -> None:
        """Record every accepted request, from the service's own consumer group."""

        @kafka.subscriber(
            REQUESTS_ACCEPTED,
            name="accepted-requests",
            description="Accepted requests' tenants and principals, to check events against.",
        )
        async def on_accepted(event: Envelope[RequestAccepted], record: Record) -> None:
            """Remember whose request this is (as intake verified it)."""
            await self.record(event)

        self._reader = kafka.subscription("accepted-requests")

    async def record(self, event: Envelope[Any]) -> None:
        """Remember ``event``'s request, and wake whoever waits for it."""
        await self.requests.record(
            event.workflow_id, tenant=event.tenant, principal=event.principal
        )
        self._recorded.set()

    async def refusal(self, event: Envelope[Any]) -> str | None:
        """Why ``event`` does not act for its request as accepted; None if it does.
        Raises ``RequestNotReadYet`` when its request may still be among the accepted
        requests not read yet."""
        vouched = await self.requests.get(event.workflow_id)
        ends = None
        if vouched is None:
            # Where the accepted requests end now, before the wait (only when the request
            # is unknown: a request to the broker): its acceptance, written before this
            # event, is before these offsets if it exists at all.
            ends = await self._reader.end_offsets() if self._reader is not None else None
            vouched = await self._vouched(event.workflow_id)
        if vouched is None:
            if self._reader is not None and ends and not await self._reader.handled_up_to(ends):
                raise RequestNotReadYet(
                    f"request {event.workflow_id} is not recorded after {self.wait_s:g}s and"
                    " the accepted requests written before it are not all read yet"
                )
            return f"the mesh accepted no request {event.workflow_id} (waited {self.wait_s:g}s)"
        if vouched.tenant != event.tenant:
            return (
                f"the event is for tenant {event.tenant!r}; request {event.workflow_id} "
                f"is {vouched.tenant!r}'s"
            )
        if vouched.principal != event.principal:
            return (
                f"the event acts for {_who(event.principal)}; request {event.workflow_id} "
                f"was accepted for {_who(vouched.principal)}"
            )
        return None

    async def _vouched(self, workflow_id: uuid.UUID) -> Vouched | None:
        """The request, waiting up to ``wait_s`` for one not recorded yet (woken by each
        new record, and polled, since another instance may record it in the shared table)."""
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while (found := await self.requests.get(workflow_id)) is None:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            self._recorded.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._recorded.wait(), timeout=min(left, 0.5))
        return found
