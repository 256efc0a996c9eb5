"""A PostgreSQL server for tests, and fresh databases on it.

The server is the one ``PACTMESH_TEST_POSTGRES_URL`` names when set (a CI service, say),
else the project's private cluster (``infra/postgres/pg.sh``: Debian's packages, trust
auth, 127.0.0.1 only) on ``PACTMESH_TEST_PG_PORT``, reset first so that nothing survives
from an earlier run. Stores get a database each rather than a schema: a store then runs
its migrations exactly as in production (fixed table names in ``public``), and nothing it
creates is visible to another store's tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from pactmesh_harness.mesh import REPO
from pactmesh_harness.servers import start_private

PG_SH = REPO / "infra" / "postgres" / "pg.sh"
DEFAULT_PORT = 15433
"""The private cluster's port when ``PACTMESH_TEST_PG_PORT`` is unset."""


@dataclass
class PostgresServer:
    """A PostgreSQL server the tests may create and drop databases on."""

    url: str
    """A URL of the server's maintenance database: databases are created from there."""
    how: str
    startup_s: float
    stop: Callable[[], object] = lambda: None
    halt: Callable[[], object] | None = None
    """Stop the server, keeping its data, for a fault test (only the private cluster)."""
    resume: Callable[[], object] | None = None
    """Start a halted server again."""
    pid_file: Path | None = None
    """``postmaster.pid`` of the private cluster (its first line is the postmaster's PID,
    the parent of every server process); ``None`` for an external server."""

    def create_database(self) -> str:
        """Create an empty database under a fresh name; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return database_url(self.url, name)

    def drop_database(self, url: str) -> None:
        """Drop the database ``url`` names, ending the connections still open on it."""
        name = urlsplit(url).path.lstrip("/")
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        with psycopg.connect(self.url, autocommit=True) as admin:
            admin.execute(statement.format(sql.Identifier(name)))

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new empty database's URL, dropped on exit."""
        url = self.create_database()
        try:
            yield url
        finally:
            self.drop_database(url)


def empty_tables(url: str) -> None:
    """Delete every row of the database at ``url`` but the migration tools' own (the
    schema stays: a store opened next finds it current)."""
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename NOT LIKE 'alembic_version%' AND tablename NOT LIKE '%migrations'"
        ).fetchall()
        if tables:
            names = sql.SQL(", ").join(sql.Identifier(name) for (name,) in tables)
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(names))


def database_url(server_url: str, name: str) -> str:
    """``server_url`` with its database replaced by ``name``."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def start_postgres(cache: Path) -> PostgresServer:
    """The external server if ``PACTMESH_TEST_POSTGRES_URL`` is set, else the private
    cluster (data under ``cache``), reset and started; ``stop`` stops what was started."""
    if external := os.environ.get("PACTMESH_TEST_POSTGRES_URL"):
        return PostgresServer(external, "external", 0.0)
    env = {
        **os.environ,
        "PG_PORT": os.environ.get("PACTMESH_TEST_PG_PORT", str(DEFAULT_PORT)),
        "PG_DATA_DIR": str(cache / "postgres-test" / "data"),
    }
    server = start_private(PG_SH, env)
    how = f"private cluster on port {env['PG_PORT']}"
    return PostgresServer(
        server.url,
        how,
        server.startup_s,
        server.stop,
        halt=server.halt,
        resume=server.resume,
        pid_file=Path(env["PG_DATA_DIR"]) / "postmaster.pid",
    )
