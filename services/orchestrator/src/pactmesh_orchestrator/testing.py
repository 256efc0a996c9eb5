"""Stand-ins for the engine's publisher and outbox, for tests that drive the engine
in-process (no broker, no database for the outbox)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pactmesh_contracts.envelope import Envelope
from pactmesh_contracts.topics import AUDIT, topic_for


class CollectingPublisher:
    """Keeps every event the engine publishes, acknowledging each at once.

    With ``wire_check`` each event is first round-tripped through its topic's wire
    format, so a test fails on an event no consumer could decode. The timeline's audit
    events are kept apart, in ``audits``: ``events`` holds what drives the mesh.
    """

    def __init__(self, *, wire_check: bool = False) -> None:
        self.events: list[Envelope[Any]] = []
        self.audits: list[Envelope[Any]] = []
        self._wire_check = wire_check

    async def publish(self, event: Envelope[Any]) -> None:
        if self._wire_check:
            event = topic_for(event.payload).adapter.validate_json(event.model_dump_json())
        (self.audits if topic_for(event.payload) is AUDIT else self.events).append(event)

    async def send(self, event: Envelope[Any]) -> Awaitable[object]:
        await self.publish(event)
        return asyncio.ensure_future(asyncio.sleep(0))  # acknowledged at once

    async def publish_all(self, events: Sequence[Envelope[Any]]) -> None:
        for event in events:
            await self.publish(event)

    def take(self) -> list[Envelope[Any]]:
        """The events published since the last call."""
        taken, self.events = self.events, []
        return taken


class MemoryOutbox:
    """The outbox's marks in a set."""

    def __init__(self) -> None:
        self.marks: set[tuple[str, str]] = set()

    async def published(self, thread_id: str, checkpoint_id: str) -> bool:
        return (thread_id, checkpoint_id) in self.marks

    async def mark(self, thread_id: str, checkpoint_id: str) -> None:
        self.marks.add((thread_id, checkpoint_id))


class FakeClock:
    """A clock for the engine and the sweeper that moves only when told."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move ``seconds`` on."""
        self.now += timedelta(seconds=seconds)
