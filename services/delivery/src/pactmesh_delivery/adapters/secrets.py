"""Webhook signing secrets, encrypted at rest.

A signing secret must be read back to sign each delivery (a hash would not do), so it is
kept encrypted with Fernet (AES-128-CBC and HMAC-SHA256, from ``cryptography``) under
the keys of ``PACTMESH_DELIVERY_WEBHOOK_SECRET_KEYS``: the first encrypts, every one
decrypts (``MultiFernet``), so a key is rotated by putting the new one first; rows
sealed under an older key are re-sealed under the first at start-up. Without the
setting, one key is generated on first use under the data dir
(``<data dir>/delivery/webhook-secrets.key``, mode 0600), like the development issuer's.

A stored value is ``fernet:<token>``; a value without that prefix is a plain-text secret
of an earlier release, sealed when the store opens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pactmesh_kit.files import created_once

PREFIX = "fernet:"
KEY_FILE = Path("delivery") / "webhook-secrets.key"


class SecretBox:
    """Seals and opens webhook signing secrets with a list of Fernet keys."""

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if not keys:
            raise ValueError("at least one Fernet key is needed")
        self._primary = Fernet(keys[0])
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, secret: str) -> str:
        """``secret`` as stored: ``fernet:<token>`` under the first key."""
        return PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str | None:
        """The secret a stored value holds (a plain-text legacy value as it is);
        ``None`` when no configured key opens it (a key was removed too early)."""
        if not sealed(stored):
            return stored
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken:
            return None

    def reseal(self, stored: str) -> str | None:
        """What ``stored`` should become: sealed if it is plain text, re-sealed under
        the first key if an older one sealed it; ``None`` when it is fine as it is (or
        no key opens it: it is left for an operator who still has the key)."""
        if not sealed(stored):
            return self.seal(stored)
        token = stored.removeprefix(PREFIX).encode()
        try:
            self._primary.decrypt(token)
        except InvalidToken:
            try:
                return PREFIX + self._fernet.rotate(token).decode()
            except InvalidToken:
                return None
        return None


def sealed(stored: str) -> bool:
    """Whether a stored value is encrypted (not a legacy plain-text secret)."""
    return stored.startswith(PREFIX)


def generated_key(data_dir: Path) -> bytes:
    """The key generated under ``data_dir`` on first use (several processes may start
    at once: ``created_once`` publishes exactly one candidate; the others read it)."""
    return created_once(data_dir / KEY_FILE, Fernet.generate_key).strip()
