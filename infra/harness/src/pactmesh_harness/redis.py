"""A Redis server for tests (the shared rate-limit storage of several intake instances).

The one ``PACTMESH_TEST_REDIS_URL`` names when set, else the project's private server
(``infra/redis/redis.sh``: Debian's redis-server, 127.0.0.1 only, no persistence) on
``PACTMESH_TEST_REDIS_PORT``, reset first so nothing survives from an earlier run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pactmesh_harness.mesh import REPO
from pactmesh_harness.servers import start_private

REDIS_SH = REPO / "infra" / "redis" / "redis.sh"
DEFAULT_PORT = 16379
"""The private server's port when ``PACTMESH_TEST_REDIS_PORT`` is unset."""


@dataclass
class RedisServer:
    """A Redis server the tests may use (and flush)."""

    url: str
    how: str
    startup_s: float
    stop: Callable[[], object] = lambda: None
    pid_file: Path | None = None
    """The private server's pidfile; ``None`` for an external server."""


def start_redis(cache: Path) -> RedisServer:
    """The external server if ``PACTMESH_TEST_REDIS_URL`` is set, else the private one
    (data under ``cache``), reset and started; ``stop`` stops what was started."""
    if external := os.environ.get("PACTMESH_TEST_REDIS_URL"):
        return RedisServer(external, "external", 0.0)
    env = {
        **os.environ,
        "REDIS_PORT": os.environ.get("PACTMESH_TEST_REDIS_PORT", str(DEFAULT_PORT)),
        "REDIS_DATA_DIR": str(cache / "redis-test"),
    }
    server = start_private(REDIS_SH, env)
    how = f"private server on port {env['REDIS_PORT']}"
    pid_file = Path(env["REDIS_DATA_DIR"]) / "redis.pid"
    return RedisServer(server.url, how, server.startup_s, server.stop, pid_file)
