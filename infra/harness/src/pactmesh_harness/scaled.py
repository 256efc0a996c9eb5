"""The mesh scaled out as production runs it: several instances of each service sharing
their state in Postgres (``PACTMESH_POSTGRES_URL``) and intake's rate limits in Redis
(``PACTMESH_INTAKE_RATE_LIMIT_STORAGE``). The scale tests start it on the servers of
their fixtures (``postgres_url``, ``redis_url``); ``make bench``'s scaled phase starts
the servers with ``shared_state`` and charges their CPU to the workload."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pactmesh_harness.mesh import SERVICES, Broker, Mesh, running_mesh
from pactmesh_harness.postgres import start_postgres
from pactmesh_harness.procstat import pid_from_file
from pactmesh_harness.redis import start_redis

TWO_OF_EACH: Mapping[str, int] = dict.fromkeys(SERVICES, 2)
"""Two instances of every one of the six services."""


def scaled_env(postgres_url: str, redis_url: str | None = None) -> dict[str, str]:
    """The settings that let several instances of a service share its state: every store
    on ``postgres_url``, and intake's rate limits on ``redis_url`` when given (else each
    intake instance counts its own)."""
    env = {"PACTMESH_POSTGRES_URL": postgres_url}
    if redis_url:
        env["PACTMESH_INTAKE_RATE_LIMIT_STORAGE"] = redis_url
    return env


@contextmanager
def running_scaled_mesh(
    broker: Broker,
    data_dir: Path,
    *,
    postgres_url: str,
    redis_url: str | None = None,
    instances: Mapping[str, int] = TWO_OF_EACH,
    env: Mapping[str, str] | None = None,
    ready_timeout_s: float = 300,
    **options: Any,
) -> Iterator[Mesh]:
    """``running_mesh`` with ``instances`` of each service (two of every one by default)
    on shared state (``scaled_env``), ``env`` added. Each process has ``ready_timeout_s``
    to become ready (twelve services joining their groups on a busy machine take minutes);
    ``options`` go to ``running_mesh`` (``model_sim``, ``log_dir``)."""
    with running_mesh(
        broker,
        data_dir,
        env=scaled_env(postgres_url, redis_url) | dict(env or {}),
        instances=instances,
        ready_timeout_s=ready_timeout_s,
        **options,
    ) as mesh:
        yield mesh


@dataclass(frozen=True)
class SharedState:
    """A fresh Postgres database and a Redis server for a scaled mesh, and the PIDs whose
    CPU they cost."""

    postgres_url: str
    redis_url: str
    postgres_how: str
    redis_how: str
    postgres_pid_file: Path | None
    redis_pid_file: Path | None

    def pids(self) -> dict[str, int]:
        """The server processes started here, by name: Postgres's postmaster (whose
        children are its backends, see ``procstat.tree_cpu_s``) and redis-server. An
        external server (``PACTMESH_TEST_POSTGRES_URL``, ``PACTMESH_TEST_REDIS_URL``)
        has none: its CPU is not attributable from here."""
        found = {}
        for name, path in (("postgres", self.postgres_pid_file), ("redis", self.redis_pid_file)):
            pid = pid_from_file(path) if path else None
            if pid is not None:
                found[name] = pid
        return found


@contextmanager
def shared_state(cache: Path) -> Iterator[SharedState]:
    """Postgres (a fresh database on it) and Redis for a scaled mesh: the private servers
    of ``pg.sh`` and ``redis.sh`` under ``cache`` on ``PACTMESH_TEST_PG_PORT`` and
    ``PACTMESH_TEST_REDIS_PORT`` (reset first), or the external ones the test settings
    name; what was started is stopped on exit."""
    postgres = start_postgres(cache)
    try:
        redis = start_redis(cache)
        try:
            with postgres.fresh_database() as url:
                yield SharedState(
                    url, redis.url, postgres.how, redis.how, postgres.pid_file, redis.pid_file
                )
        finally:
            redis.stop()
    finally:
        postgres.stop()
