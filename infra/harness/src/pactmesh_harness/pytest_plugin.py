"""Fixtures for any package's tests, loaded by pytest through the ``pytest11`` entry point
of pactmesh-harness (installed in the dev environment only).

``postgres_url`` gives the requesting test module a fresh, empty database of its own,
dropped after the module; the server behind it (``postgres_server``) starts once per
session, when a test first needs it: a run that needs no Postgres starts none. Tests in
one module share the database, so they use ids of their own (as LangGraph's checkpoint
conformance suite does) rather than expecting empty tables.

A store with a SQLite and a Postgres implementation runs one suite against both through
``store_backend``, a fixture parametrised over the two::

    @pytest.fixture
    def settings(store_backend: StoreBackend) -> Settings:
        return Settings(**store_backend.settings())

    async def test_a_review_survives_reopening(settings: Settings) -> None:
        async with open_store(settings) as store:
            ...

Every test that reaches Postgres carries the ``postgres`` marker (``-m "not postgres"``
leaves them out).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from pactmesh_harness.postgres import PostgresServer, start_postgres

POSTGRES_MARK = "postgres"
_BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so ``--strict-markers`` accepts it in every package."""
    config.addinivalue_line(
        "markers", f"{POSTGRES_MARK}: needs PostgreSQL (the private cluster of pg.sh)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that use Postgres, however they ask for it."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        uses_fixture = "postgres_url" in getattr(item, "fixturenames", ())
        if uses_fixture or params.get("store_backend") == "postgres":
            item.add_marker(POSTGRES_MARK)


@dataclass(frozen=True)
class StoreBackend:
    """Where a store under test keeps its state."""

    kind: Literal["sqlite", "postgres"]
    data_dir: Path
    """A fresh directory: SQLite files go here (and anything else a service writes)."""
    postgres_url: str | None
    """For ``postgres``: the test module's own database."""

    def settings(self) -> dict[str, Any]:
        """Keyword arguments for a service's ``Settings`` that select this backend."""
        return {"data_dir": self.data_dir, "postgres_url": self.postgres_url}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session (see ``pactmesh_harness.postgres``)."""
    from pactmesh_harness.mesh import REPO

    server = start_postgres(REPO / ".cache")
    print(f"\npostgres: {server.how}, ready in {server.startup_s:.1f}s")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """The URL of a fresh, empty database for the requesting test module."""
    with postgres_server.fresh_database() as url:
        yield url


@pytest.fixture(params=_BACKENDS)
def store_backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    """Each implementation of a store in turn: ``sqlite`` (files under a fresh data dir)
    and ``postgres`` (the module's database; the server starts only for this case)."""
    if request.param == "sqlite":
        return StoreBackend("sqlite", tmp_path, None)
    return StoreBackend("postgres", tmp_path, request.getfixturevalue("postgres_url"))
