"""Pruning rows past their time to live, periodically, on every instance.

Each service's prune deletes with statements that are safe to run on several instances
at once (a row deleted by one is simply not there for the other; on Postgres batches
skip rows another instance has locked), so no instance needs to be elected for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

logger = logging.getLogger(__name__)

Prune = Callable[[], Awaitable[Mapping[str, int]]]
"""Deletes what is past its retention; how many rows of each kind went."""


@asynccontextmanager
async def pruning(name: str, prune: Prune, *, interval_s: float) -> AsyncIterator[None]:
    """Run ``prune`` now and every ``interval_s`` until exit (a failed round is logged
    and tried again at the next)."""
    task = asyncio.create_task(_loop(name, prune, interval_s), name=f"retention-{name}")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _loop(name: str, prune: Prune, interval_s: float) -> None:
    while True:
        try:
            pruned = {kind: n for kind, n in (await prune()).items() if n}
            if pruned:
                logger.info("%s retention pruned %s", name, pruned)
        except Exception:
            logger.exception("%s retention round failed; trying again later", name)
        await asyncio.sleep(interval_s)
