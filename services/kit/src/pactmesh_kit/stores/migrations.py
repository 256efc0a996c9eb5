"""Each stateful service's schema, created and migrated by Alembic at start-up.

A service keeps its revisions in ``adapters/migrations/versions`` beside an ``env.py``
that calls :func:`run_in_alembic_env`; its :class:`Migrations` names that directory and
the service's own version table (``alembic_version_<service>``), so services sharing one
Postgres database migrate independently. The same revisions build the SQLite file and
the Postgres schema: they use ``op.create_table`` and the column types below, which are
native on Postgres (``uuid``, ``timestamptz``) and keep SQLite's text where the SQLite
stores have always written text.

Instances starting together take turns: on Postgres the upgrade runs in one transaction
that first takes a transaction-level advisory lock named after the version table (DDL is
transactional there, so an instance that waited finds the schema current); on SQLite the
upgrade runs in one ``BEGIN IMMEDIATE`` transaction (and a second instance on the same
data dir is refused anyway, see ``lock``).

Files written before the service used Alembic have no version table: ``legacy`` reads
what such a file (or, for the orchestrator, a Postgres database) holds and names the
revision it matches, which is stamped before upgrading, so a data dir written by an
earlier release opens with this one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

logger = logging.getLogger(__name__)

Uuid = sa.Uuid(as_uuid=True).with_variant(sa.Text(), "sqlite")
"""A UUID: ``uuid`` on Postgres, text on SQLite."""
Timestamp = sa.DateTime(timezone=True).with_variant(sa.Text(), "sqlite")
"""An instant: ``timestamptz`` on Postgres, ISO-8601 text on SQLite."""
Serial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""An ever-increasing row number: ``bigserial`` on Postgres, and on SQLite the ``INTEGER
PRIMARY KEY`` that AUTOINCREMENT needs (with ``sqlite_autoincrement=True``)."""

Legacy = Callable[[Connection], str | None]
"""Given a database without the version table: the revision its tables match, or None
(nothing there yet, or nothing worth keeping: the callable may set it aside)."""


@dataclass(frozen=True)
class Migrations:
    """A service's Alembic revisions and where its version is kept."""

    scripts: Path
    """The directory holding ``env.py`` and ``versions/``."""
    version_table: str
    legacy: Legacy | None = None
    legacy_dialects: tuple[str, ...] = ("sqlite",)
    """The databases ``legacy`` is asked about (where the service wrote tables before
    it used Alembic)."""

    async def upgrade(self, database: str | Path) -> None:
        """Bring ``database`` (a Postgres URL, or a SQLite file's path) to the latest
        revision, one instance at a time; runs in a worker thread."""
        await asyncio.to_thread(self.upgrade_now, database)

    def upgrade_now(self, database: str | Path) -> None:
        """:meth:`upgrade`, in the calling thread."""
        engine = _engine(database)
        try:
            with engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:name, 0))"),
                        {"name": f"pactmesh:{self.version_table}"},
                    )
                config = self._config(conn)
                if (revision := self._legacy_revision(conn)) is not None:
                    logger.info(
                        "adopting a file from before %s at %s", self.version_table, revision
                    )
                    command.stamp(config, revision)
                command.upgrade(config, "head")
        finally:
            engine.dispose()

    def _legacy_revision(self, conn: Connection) -> str | None:
        if self.legacy is None or conn.dialect.name not in self.legacy_dialects:
            return None
        if sa.inspect(conn).has_table(self.version_table):
            return None
        return self.legacy(conn)

    def _config(self, conn: Connection) -> Config:
        config = Config()
        config.set_main_option("script_location", str(self.scripts))
        config.attributes.update(connection=conn, version_table=self.version_table)
        return config


def run_in_alembic_env() -> None:
    """The body of every service's ``env.py``: run the revisions on the connection (and
    in the transaction) :meth:`Migrations.upgrade_now` opened."""
    from alembic import context

    attributes = context.config.attributes
    context.configure(
        connection=attributes["connection"], version_table=attributes["version_table"]
    )
    with context.begin_transaction():
        context.run_migrations()


def _engine(database: str | Path) -> Engine:
    if isinstance(database, Path):
        database.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(f"sqlite:///{database}", poolclass=NullPool)
        event.listen(engine, "connect", _sqlite_autocommit_driver)
        event.listen(engine, "begin", _sqlite_begin_immediate)
        return engine
    return sa.create_engine(sqlalchemy_url(database), poolclass=NullPool)


def sqlalchemy_url(url: str) -> str:
    """A ``postgresql://`` URL as SQLAlchemy spells it for psycopg 3."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def _sqlite_autocommit_driver(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite begins transactions on its own, and not before DDL: take that over, so
    # that a whole upgrade is one transaction (SQLAlchemy's documented recipe).
    dbapi_connection.isolation_level = None


def _sqlite_begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
