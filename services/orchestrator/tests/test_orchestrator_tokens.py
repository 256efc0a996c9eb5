"""Streamed pieces become WorkflowToken events: the first at once, the rest gathered."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from pactmesh_contracts.events import WorkflowToken
from pactmesh_orchestrator.domain.tokens import MAX_TEXT, TokenStream


class Sent:
    def __init__(self) -> None:
        self.tokens: list[WorkflowToken] = []
        self.arrived = asyncio.Event()

    async def __call__(self, token: WorkflowToken) -> Awaitable[object]:
        self.tokens.append(token)
        self.arrived.set()
        return asyncio.ensure_future(asyncio.sleep(0))

    async def until(self, count: int) -> None:
        async with asyncio.timeout(5.0):
            while len(self.tokens) < count:
                self.arrived.clear()
                await self.arrived.wait()


def _piece(seq: int, text: str, *, final: bool = False, step: str = "draft") -> dict[str, Any]:
    return {"kind": "token", "step": step, "seq": seq, "text": text, "final": final}


async def _stream(stream: TokenStream, texts: list[str]) -> None:
    for n, text in enumerate(texts):
        await stream.add(_piece(n, text, final=n == len(texts) - 1))
    await stream.close()


async def test_no_window_sends_an_event_per_piece() -> None:
    sent = Sent()
    await _stream(TokenStream(sent, window_s=0), ["Hel", "lo", " there"])
    assert [(t.seq, t.text, t.final) for t in sent.tokens] == [
        (0, "Hel", False),
        (1, "lo", False),
        (2, " there", True),
    ]


async def test_the_first_piece_leaves_at_once_and_a_burst_leaves_together() -> None:
    sent = Sent()
    stream = TokenStream(sent, window_s=10)
    await stream.add(_piece(0, "Hel"))
    assert [t.text for t in sent.tokens] == ["Hel"], "time to first token is unchanged"
    await stream.add(_piece(1, "lo"))
    await stream.add(_piece(2, " there", final=True))
    await stream.close()
    assert [(t.seq, t.text, t.final) for t in sent.tokens] == [
        (0, "Hel", False),
        (1, "lo there", True),
    ]


async def test_gathered_pieces_leave_when_the_window_closes_without_another_piece() -> None:
    sent = Sent()
    stream = TokenStream(sent, window_s=0.05)
    await stream.add(_piece(0, "a"))
    await stream.add(_piece(1, "b"))
    await stream.add(_piece(2, "c"))
    await sent.until(2)  # no further piece: the window's timer sends "bc"
    assert [t.text for t in sent.tokens] == ["a", "bc"]
    await stream.add(_piece(3, "", final=True))
    await stream.close()
    assert [(t.seq, t.final) for t in sent.tokens] == [(0, False), (1, False), (2, True)]


async def test_a_long_gathering_is_split_at_the_contracts_limit() -> None:
    sent = Sent()
    stream = TokenStream(sent, window_s=10)
    await _stream(stream, ["x", "y" * MAX_TEXT, "z"])
    assert "".join(t.text for t in sent.tokens) == "x" + "y" * MAX_TEXT + "z"
    assert all(len(t.text) <= MAX_TEXT for t in sent.tokens)
    assert [t.seq for t in sent.tokens] == list(range(len(sent.tokens)))
    assert [t.final for t in sent.tokens] == [False] * (len(sent.tokens) - 1) + [True]


async def test_steps_are_counted_apart() -> None:
    sent = Sent()
    stream = TokenStream(sent, window_s=0)
    await stream.add(_piece(0, "a", step="one"))
    await stream.add(_piece(0, "b", step="two", final=True))
    await stream.add(_piece(1, "c", step="one", final=True))
    await stream.close()
    assert [(t.step, t.seq, t.final) for t in sent.tokens] == [
        ("one", 0, False),
        ("two", 0, True),
        ("one", 1, True),
    ]


async def test_a_restart_voids_what_is_gathered_and_leaves_at_once() -> None:
    sent = Sent()
    stream = TokenStream(sent, window_s=10)
    await stream.add(_piece(0, "Hel"))
    await stream.add(_piece(1, "lo wor"))  # gathered, never sent: its model broke off
    await stream.add({"kind": "token", "step": "draft", "restarted_on": "openai:backup"})
    await stream.add(_piece(0, "Hi"))
    await stream.add(_piece(1, " there", final=True))
    await stream.close()
    assert [(t.seq, t.text, t.final, t.restarted_on) for t in sent.tokens] == [
        (0, "Hel", False, None),
        (1, "", False, "openai:backup"),
        (2, "Hi there", True, None),
    ]
