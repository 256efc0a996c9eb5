"""One SQLite instance per data dir and service: a second refuses to start.

Two processes on one SQLite file would each run the outbox relay, the retention task and
their own dispatch loops over the same rows, none of which SQLite can arbitrate the way
Postgres does (``FOR UPDATE SKIP LOCKED``). The lock is an OS file lock (``flock``
through the ``filelock`` library), released by the kernel when the process dies, so a
crashed instance never blocks its restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout
from pydantic import SecretStr

from pactmesh_kit.errors import PactmeshError


class Placed(Protocol):
    """Where a service keeps its state (``StoreSettings``, the orchestrator's settings)."""

    @property
    def service_name(self) -> str:
        """The service."""
        ...

    @property
    def data_dir(self) -> Path:
        """Its data dir, where the SQLite files are."""
        ...

    @property
    def postgres_url(self) -> SecretStr | None:
        """Set when its state is in Postgres."""
        ...


class InstanceLocked(PactmeshError, RuntimeError):
    """Another instance of this service runs on this data dir (SQLite)."""

    code = "instance_locked"
    kind = "unavailable"
    waiting_cures = False  # the other instance runs on; a second one must not start


@asynccontextmanager
async def instance_lock(settings: Placed) -> AsyncIterator[None]:
    """Hold ``<data dir>/<service>.lock`` while the service runs on SQLite; nothing to
    hold on Postgres (instances share the database). Raises :class:`InstanceLocked`
    when another process holds it."""
    if settings.postgres_url is not None:
        yield
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / f"{settings.service_name}.lock"
    lock = FileLock(path, blocking=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout as exc:
        raise InstanceLocked(
            f"another {settings.service_name} instance runs on {settings.data_dir} (it holds"
            f" {path}). SQLite, the default store, serves one instance per data dir: give"
            " this one its own PACTMESH_DATA_DIR, or set PACTMESH_POSTGRES_URL to run"
            " several instances on a shared Postgres"
        ) from exc
    try:
        yield
    finally:
        lock.release()
