"""Streamed tokens, gathered into ``WorkflowToken`` events at most every ``window_s``.

A model streams a piece of text every few milliseconds; an event per piece costs a
publish, a span and a consume at every reader, and makes tokens the bulk of the mesh's
traffic. A step's first piece leaves at once (time to first token is unchanged); the
pieces that follow within ``window_s`` leave together, in one event, when the window
closes or the step's final piece arrives, whichever is first. ``window_s=0`` sends one
event per piece. Each event's ``seq`` counts the step's events from 0, and the events'
texts put together are the pieces' texts in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pactmesh_contracts.events import WorkflowToken

MAX_TEXT = 2_000
"""The contract's limit on one event's text; longer gatherings leave as several."""


@dataclass
class _Step:
    pieces: list[str] = field(default_factory=list)
    seq: int = 0
    final: bool = False


class TokenStream:
    """Gathers one run's streamed pieces and hands them, as events, to ``send``.

    ``send`` hands an event to the producer in call order and returns an awaitable of
    its acknowledgement; ``close`` flushes what is left and waits for every
    acknowledgement.
    """

    def __init__(
        self, send: Callable[[WorkflowToken], Awaitable[Awaitable[object]]], *, window_s: float
    ) -> None:
        self._send = send
        self._window_s = window_s
        self._steps: dict[str, _Step] = {}
        self._last_sent = 0.0
        self._lock = asyncio.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: list[asyncio.Task[None]] = []
        self._acks: list[Awaitable[object]] = []

    async def add(self, chunk: dict[str, Any]) -> None:
        """Take one piece (``{"step", "text", "final"}``) from the custom stream; a piece
        with ``restarted_on`` says the step's text so far is void (its model failed
        mid-answer) and leaves at once, without the pieces still gathered."""
        step = self._steps.setdefault(chunk["step"], _Step())
        if restarted_on := chunk.get("restarted_on"):
            await self._restart(chunk["step"], step, restarted_on)
            return
        first = step.seq == 0 and not step.pieces
        step.pieces.append(chunk["text"])
        step.final = step.final or bool(chunk.get("final", False))
        loop = asyncio.get_running_loop()
        if first or step.final or loop.time() - self._last_sent >= self._window_s:
            await self.flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._window_s, self._flush_later)

    def _flush_later(self) -> None:
        self._timer = None
        self._flushes.append(asyncio.ensure_future(self.flush()))

    async def flush(self) -> None:
        """Send every gathered piece now, one event per step (more past ``MAX_TEXT``)."""
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for name, step in self._steps.items():
                if step.pieces:
                    await self._send_step(name, step)
            self._last_sent = asyncio.get_running_loop().time()

    async def _send_step(self, name: str, step: _Step) -> None:
        text = "".join(step.pieces)
        step.pieces.clear()
        parts = [text[i : i + MAX_TEXT] for i in range(0, len(text), MAX_TEXT)] or [""]
        for n, part in enumerate(parts):
            final = step.final and n == len(parts) - 1
            token = WorkflowToken(seq=step.seq, text=part, step=name, final=final)
            step.seq += 1
            self._acks.append(await self._send(token))

    async def _restart(self, name: str, step: _Step, model: str) -> None:
        async with self._lock:
            step.pieces.clear()
            token = WorkflowToken(seq=step.seq, text="", step=name, final=False, restarted_on=model)
            step.seq += 1
            self._acks.append(await self._send(token))

    async def close(self) -> None:
        """Send what is left and wait until the broker has acknowledged every event."""
        await self.flush()
        await asyncio.gather(*self._flushes)
        await asyncio.gather(*self._acks)

    def abandon(self) -> None:
        """Stop: the run failed, what is gathered is not sent (tokens are best-effort)."""
        if self._timer is not None:
            self._timer.cancel()
        for flush in self._flushes:
            flush.cancel()
