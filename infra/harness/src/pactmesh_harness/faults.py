"""Faults for the fault suite: a dependency down for a while, a full disk, large topics.

Every fault here is undone by the context manager that made it, whatever the test does
meanwhile, so a failing test leaves the broker, Postgres and the filesystem as it found
them.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Timing:
    """When a fault started and ended (``time.monotonic()``)."""

    started: float = 0.0
    """When the fault was set off (a stop begun, a disk being filled)."""
    ended: float = 0.0
    """When the fault was over (the dependency back up)."""
    down_s: float = 0.0
    """How long the dependency was down: from its stop's end to its start's beginning."""

    def since_end(self) -> float:
        """Seconds from the fault's end until now."""
        return time.monotonic() - self.ended


@contextmanager
def down(
    halt: Callable[[], object], resume: Callable[[], object], *, for_s: float
) -> Iterator[Timing]:
    """``halt()`` on entry; ``resume()`` once ``for_s`` seconds have passed since, at the
    latest on exit (the block runs while the dependency is down: it should end before
    ``for_s``, and then the exit waits out the rest)."""
    timing = Timing(started=time.monotonic())
    halt()
    halted = time.monotonic()
    try:
        yield timing
        left = halted + for_s - time.monotonic()
        if left > 0:
            time.sleep(left)  # the outage's length is the fault itself, not a wait for a condition
    finally:
        timing.down_s = time.monotonic() - halted
        resume()
        timing.ended = time.monotonic()


@contextmanager
def tmpfs(path: Path, *, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` mounted at ``path`` (created) for the block; root only."""
    if os.geteuid() != 0:
        import pytest

        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=False)


@contextmanager
def full_disk(directory: Path, *, for_s: float) -> Iterator[Timing]:
    """The filesystem of ``directory`` filled to the last byte for ``for_s`` seconds (a
    file written until ``ENOSPC``), then freed."""
    filler = directory / ".filler"
    timing = Timing(started=time.monotonic())
    try:
        with filler.open("wb", buffering=0) as sink:
            chunk = b"\0" * (1 << 20)
            while True:
                try:
                    sink.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(chunk) == 1:
                        break
                    chunk = chunk[: len(chunk) // 2]
        yield timing
        left = timing.started + for_s - time.monotonic()
        if left > 0:
            time.sleep(left)  # the outage's length is the fault itself
    finally:
        filler.unlink(missing_ok=True)
        timing.ended = time.monotonic()
        timing.down_s = timing.ended - timing.started


def allow_message_bytes(
    options: dict[str, Any], topic: str, size: int, *, within_s: float = 30
) -> None:
    """Let ``topic`` take messages up to ``size`` bytes (Kafka's default is 1 MB), keeping
    its other settings, and wait until the broker applies it (asynchronously).
    ``options`` are aiokafka's connection options (``Mesh.kafka_options()``)."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from pactmesh_kit.bootstrap import topic_overrides

    async def alter() -> None:
        admin = AIOKafkaAdminClient(**options)
        await admin.start()
        try:
            configs = (await topic_overrides(admin, [topic])).get(topic, {})
            configs["max.message.bytes"] = str(size)
            # AlterConfigs replaces every override of the topic: the others go back with it
            await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
            deadline = time.monotonic() + within_s
            while (await topic_overrides(admin, [topic])).get(topic, {}).get(
                "max.message.bytes"
            ) != str(size):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}: max.message.bytes not applied")
                await asyncio.sleep(0.2)
        finally:
            await admin.close()

    asyncio.run(alter())
