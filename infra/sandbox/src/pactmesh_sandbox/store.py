"""The sandbox's durable state in SQLite: idempotency keys and the ledger of side effects.

Both are written in one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock
before the key is looked up: two requests with the same key, even from two processes
sharing the file, cannot both find it missing and both create. Keys are per tenant (one
tenant reusing another's key gets neither its effect nor its answer), and each effect
records the tenant and principal it was performed for.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pactmesh_sandbox.models import EffectKind, LedgerEntry

SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of the file layout below; bump it with a migration."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL,
    body TEXT NOT NULL,
    at TEXT NOT NULL,
    tenant TEXT NOT NULL DEFAULT '',
    principal TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ledger_by_key ON ledger (idempotency_key);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
"""
_MIGRATE_1_TO_2 = """
ALTER TABLE ledger ADD COLUMN tenant TEXT NOT NULL DEFAULT '';
ALTER TABLE ledger ADD COLUMN principal TEXT NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys RENAME TO idempotency_keys_1;
CREATE TABLE idempotency_keys (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    response TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
INSERT INTO idempotency_keys SELECT '', key, fingerprint, status, response, at
    FROM idempotency_keys_1;
DROP TABLE idempotency_keys_1;
"""


class IdempotencyConflict(Exception):
    """The key was already used with a different request (HTTP 409)."""


@dataclass(frozen=True)
class Stored:
    """The response to send: freshly created, or replayed for a repeated key."""

    status: int
    body: dict[str, Any]
    replayed: bool


@dataclass(frozen=True)
class Effect:
    """What a side effect created: its id and the response that announces it."""

    id: str
    response: dict[str, Any]


def fingerprint(*, endpoint: str, body: dict[str, Any]) -> str:
    """A digest of what a request asks for, so a reused key with other content is caught."""
    canonical = json.dumps({"endpoint": endpoint, "body": body}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Store:
    """Idempotency keys and the ledger, in one SQLite file.

    Calls are synchronous and short; the sandbox makes them from its event loop, so
    within one process they also never interleave.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self._db.close()
            raise RuntimeError(f"{path} has schema {version}, newer than {SCHEMA_VERSION}")
        if version == 1:
            self._db.executescript(f"BEGIN; {_MIGRATE_1_TO_2} COMMIT;")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def healthy(self) -> bool:
        """Whether the database answers a query."""
        try:
            return bool(self._db.execute("SELECT 1").fetchone() == (1,))
        except sqlite3.Error:
            return False

    def perform(
        self,
        *,
        kind: EffectKind,
        key: str,
        tenant: str,
        principal: str,
        endpoint: str,
        body: dict[str, Any],
        effect: Callable[[], Effect],
        status: int = 201,
    ) -> Stored:
        """Run ``effect`` once per ``key`` of ``tenant``: record it in the ledger (for
        ``tenant`` and ``principal``) and keep its response; a repeat of the same request
        gets that response back and changes nothing.

        Raises ``IdempotencyConflict`` when ``key`` was used for a different request.
        """
        digest = fingerprint(endpoint=endpoint, body=body)
        now = datetime.now(UTC).isoformat()
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute(
                "SELECT fingerprint, status, response FROM idempotency_keys"
                " WHERE tenant = ? AND key = ?",
                (tenant, key),
            ).fetchone()
            if row is not None:
                if row[0] != digest:
                    raise IdempotencyConflict(
                        f"Idempotency-Key {key!r} was already used for a different request"
                    )
                stored = Stored(status=row[1], body=json.loads(row[2]), replayed=True)
            else:
                done = effect()
                self._db.execute(
                    "INSERT INTO ledger (kind, id, idempotency_key, body, at, tenant, principal)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (kind, done.id, key, json.dumps(body), now, tenant, principal),
                )
                self._db.execute(
                    "INSERT INTO idempotency_keys"
                    " (tenant, key, fingerprint, status, response, at) VALUES (?, ?, ?, ?, ?, ?)",
                    (tenant, key, digest, status, json.dumps(done.response), now),
                )
                stored = Stored(status=status, body=done.response, replayed=False)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return stored

    def ledger(
        self,
        *,
        kind: EffectKind | None = None,
        key: str | None = None,
        tenant: str | None = None,
        limit: int = 1000,
    ) -> list[LedgerEntry]:
        """Side effects in the order they happened, optionally of one kind, one key or
        one tenant."""
        rows = self._db.execute(
            f"SELECT {_ENTRY} FROM ledger"
            " WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR idempotency_key = ?2)"
            " AND (?3 IS NULL OR tenant = ?3) ORDER BY seq LIMIT ?4",
            (kind, key, tenant, limit),
        ).fetchall()
        return [_entry(row) for row in rows]

    def entry(self, *, kind: EffectKind, entity_id: str) -> LedgerEntry | None:
        """The ledger entry that created ``entity_id``, if any."""
        row = self._db.execute(
            f"SELECT {_ENTRY} FROM ledger WHERE kind = ? AND id = ?", (kind, entity_id)
        ).fetchone()
        return None if row is None else _entry(row)


_ENTRY = "seq, kind, id, idempotency_key, body, at, tenant, principal"


def _entry(row: tuple[Any, ...]) -> LedgerEntry:
    seq, kind, entity_id, key, body, at, tenant, principal = row
    return LedgerEntry(
        seq=seq,
        kind=kind,
        id=entity_id,
        idempotency_key=key,
        body=json.loads(body),
        at=datetime.fromisoformat(at),
        tenant=tenant,
        principal=principal,
    )
