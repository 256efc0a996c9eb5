"""Live progress for ``GET /v1/requests/{id}/events``: this instance's fan-out.

Every intake instance reads every progress, token and result event (its own consumer group,
from the latest offset) and hands each to the SSE clients connected to *it* that follow
that request. While no client follows any request here, its groups fetch nothing
(``LiveFeed.wanted``); the first client to follow one moves them to the topics' ends.
Queues are bounded: a client that stops reading loses its stream (it is
closed, the client can reconnect and replay), never the consumer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.events import (
    RequestStatus,
    WorkflowProgress,
    WorkflowResult,
    WorkflowToken,
)

from pactmesh_intake.domain.requests import HistoryEntry, RequestStore, ResultView, Transition

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1000
"""Events one client may fall behind by before its stream is cut."""


class Follower:
    """One client's view of one request's live events."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Envelope[Any]] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def offer(self, event: Envelope[Any]) -> None:
        """Queue ``event``, or mark the follower as having fallen too far behind."""
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class LiveFeed:
    """Request id to the followers connected to this instance (in memory)."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._queue_size = queue_size
        self._followers: dict[uuid.UUID, set[Follower]] = {}
        self.wanted = asyncio.Event()
        """Set while any client follows a request here: the live groups read only then."""

    @contextmanager
    def follow(self, request_id: uuid.UUID) -> Iterator[Follower]:
        """Receive ``request_id``'s events from now until the block exits."""
        follower = Follower(self._queue_size)
        self._followers.setdefault(request_id, set()).add(follower)
        self.wanted.set()
        try:
            yield follower
        finally:
            followers = self._followers.get(request_id, set())
            followers.discard(follower)
            if not followers:
                self._followers.pop(request_id, None)
            if not self._followers:
                self.wanted.clear()

    def publish(self, event: Envelope[Any]) -> None:
        """Hand ``event`` to every follower of its request (none: dropped)."""
        for follower in self._followers.get(event.workflow_id, ()):
            follower.offer(event)

    def following(self, request_id: uuid.UUID) -> int:
        """How many clients follow ``request_id`` here."""
        return len(self._followers.get(request_id, ()))


@dataclass(frozen=True)
class StreamItem:
    """One server-sent event: ``progress``, ``token``, ``result`` (last), or
    ``lagging`` (last, for a client too far behind)."""

    event: str
    data: dict[str, Any]
    id: str | None = None


RESULT_POLL_S = 0.25
"""How often a stream waiting for its result looks in the store as well."""
STORE_POLL_S = 1.0
"""How long a stream waits for a live event before catching up from the store."""


async def request_events(
    *, store: RequestStore, live: LiveFeed, request_id: uuid.UUID, result_wait_s: float = 10.0
) -> AsyncIterator[StreamItem]:
    """The request's recorded history, then its live progress and tokens, in order,
    then ``delivered`` and, last, its ``result``.

    Following starts before the history is read, so nothing falls between the two;
    a transition both recorded and received live is sent once. Delivery publishes the
    result before it reports ``delivered``, but on another topic, so either may reach
    this instance first: the result is held until ``delivered`` was sent, and after
    ``delivered`` the stream waits up to ``result_wait_s`` for it (live, or kept by the
    store's consumer), then ends either way.

    A status read follows the stream: the live group and the store's group read
    independently, so a terminal status or a result this stream takes from the live feed
    is written to the store (idempotently, as the store's group writes it) before it is
    sent. Once a client has seen ``delivered`` and the result here, ``GET
    /v1/requests/{id}`` on any instance returns them. Earlier transitions are left to the
    store's group: recorded ahead of their predecessors they could move a status back.
    """
    with live.follow(request_id) as follower:
        view = await store.get(request_id)
        if view is None:
            return
        sent: set[tuple[str, str, str]] = set()
        replayed = _unsent(view.history, sent, repeats=True)
        for entry in replayed:
            yield _replayed(entry)
        if _delivered(replayed):
            async for last in _result(
                store, follower, request_id, None, view.result, result_wait_s
            ):
                yield last
            return
        held: ResultView | None = None
        while not follower.overflowed or not follower.queue.empty():
            try:
                event = await asyncio.wait_for(follower.queue.get(), STORE_POLL_S)
            except TimeoutError:
                # This instance's live group and its store group read progress
                # independently: a transition may have passed the live feed before this
                # stream followed it and been stored only after the history was read.
                # Catch up from the store now and then, so such a stream still ends.
                view = await store.get(request_id)
                caught_up = _unsent(view.history if view is not None else [], sent)
                for entry in caught_up:
                    yield _replayed(entry)
                if _delivered(caught_up):
                    stored = view.result if view is not None else None
                    async for last in _result(
                        store, follower, request_id, held, stored, result_wait_s
                    ):
                        yield last
                    return
                continue
            if isinstance(event.payload, WorkflowResult):
                held = ResultView.of(event)
                continue
            item = _live_item(event, sent)
            if item is not None:
                if isinstance(event.payload, WorkflowProgress) and event.payload.status.is_terminal:
                    await store.record(Transition.of(event, event.payload))
                yield item
                if item.data.get("status") == RequestStatus.DELIVERED.value:
                    async for last in _result(
                        store, follower, request_id, held, None, result_wait_s
                    ):
                        yield last
                    return
        yield StreamItem("lagging", {"detail": "too far behind; reconnect to replay"})


def _unsent(
    history: Sequence[HistoryEntry], sent: set[tuple[str, str, str]], *, repeats: bool = False
) -> list[HistoryEntry]:
    """The entries of ``history`` not sent yet (all of them with ``repeats``: the first
    replay sends a history as recorded), up to ``delivered``; marked sent."""
    unsent: list[HistoryEntry] = []
    for entry in history:
        key = (entry.status.value, entry.service, entry.detail)
        if key in sent and not repeats:
            continue
        sent.add(key)
        unsent.append(entry)
        if entry.status is RequestStatus.DELIVERED:
            break
    return unsent


def _delivered(entries: Sequence[HistoryEntry]) -> bool:
    return bool(entries) and entries[-1].status is RequestStatus.DELIVERED


def _replayed(entry: HistoryEntry) -> StreamItem:
    return StreamItem("progress", {**entry.model_dump(mode="json"), "replayed": True})


async def _result(
    store: RequestStore,
    follower: Follower,
    request_id: uuid.UUID,
    held: ResultView | None,
    stored: ResultView | None,
    wait_s: float,
) -> AsyncIterator[StreamItem]:
    """The ``result`` event, once it is known (at most ``wait_s`` from now): ``held``
    from the live feed, else ``stored`` (read with the history), else the store's or the
    live feed's, whichever has it first."""
    deadline = asyncio.get_running_loop().time() + wait_s
    result, live = held, held is not None
    if result is None:
        result = stored or await store.result(request_id)
    while result is None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            logger.warning("no result for delivered request %s within %.1fs", request_id, wait_s)
            return
        try:
            event = await asyncio.wait_for(follower.queue.get(), min(RESULT_POLL_S, remaining))
        except TimeoutError:
            result = await store.result(request_id)
            continue
        if isinstance(event.payload, WorkflowResult):
            result, live = ResultView.of(event), True
    if live:
        # What this stream sends, a status read returns (see ``request_events``).
        await store.record_result(request_id=request_id, result=result)
    yield StreamItem("result", result.model_dump(mode="json"))


def _live_item(event: Envelope[Any], sent: set[tuple[str, str, str]]) -> StreamItem | None:
    payload = event.payload
    if isinstance(payload, WorkflowToken):
        data = payload.model_dump(
            mode="json", include={"seq", "text", "step", "final", "restarted_on"}, exclude_none=True
        )
        return StreamItem("token", data, str(event.event_id))
    assert isinstance(payload, WorkflowProgress)
    key = (payload.status.value, payload.service, payload.detail)
    if key in sent:
        return None
    sent.add(key)
    data = {
        "status": payload.status.value,
        "service": payload.service,
        "detail": payload.detail,
        "at": event.occurred_at.isoformat(),
        "replayed": False,
    }
    return StreamItem("progress", data, str(event.event_id))
