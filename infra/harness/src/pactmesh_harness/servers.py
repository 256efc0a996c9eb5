"""The project's private servers for tests, each managed by a script under ``infra/``
(``pg.sh``, ``redis.sh``) with the same verbs: ``reset``, ``start`` (prints the URL),
``stop``."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Started:
    """A private server the tests started, and how to stop it."""

    url: str
    startup_s: float
    stop: Callable[[], object]
    halt: Callable[[], object]
    """Stop the server keeping its data (a fault test's outage)."""
    resume: Callable[[], object]
    """Start a halted server again."""


def start_private(script: Path, env: dict[str, str]) -> Started:
    """Reset (nothing survives an earlier run), then start, the server ``script``
    manages, with ``env`` (its port and data dir)."""
    started = time.monotonic()
    subprocess.run([str(script), "reset"], env=env, check=True)
    url = subprocess.run(
        [str(script), "start"], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()
    return Started(
        url,
        time.monotonic() - started,
        lambda: subprocess.run([str(script), "stop"], env=env, check=False),
        halt=lambda: subprocess.run([str(script), "stop"], env=env, check=True),
        resume=lambda: subprocess.run(
            [str(script), "start"], env=env, check=True, capture_output=True
        ),
    )
