"""The development issuer: mints tokens for local use, signed with a key made on first use.

The private key lives in the data directory (``<data dir>/auth/dev-issuer.pem``, mode
0600), is generated the first time any service or the ``pactmesh token`` command needs
it, and is never committed (``.cache/`` is ignored). Services in dev mode verify with
its public key; production deployments point ``PACTMESH_AUTH_JWKS_URL`` at their
identity provider instead and never load this module's keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pactmesh_kit.files import created_once

if TYPE_CHECKING:
    from pactmesh_kit.settings import KitSettings

ALGORITHM = "ES256"
KEY_FILE = "dev-issuer.pem"


def _generate_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_key(key_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The issuer's private key, generated on first use (several services start at once
    and may all get here first: ``created_once`` publishes exactly one key)."""
    path = key_dir / KEY_FILE
    key = serialization.load_pem_private_key(created_once(path, _generate_pem), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} does not hold an EC private key")
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The public key as a JWK, with its RFC 7638 thumbprint as ``kid``."""
    numbers = key.public_numbers()
    jwk = {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64(numbers.x.to_bytes(32, "big")),
        "y": _b64(numbers.y.to_bytes(32, "big")),
    }
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
    return {**jwk, "kid": _b64(hashlib.sha256(canonical).digest()), "alg": ALGORITHM, "use": "sig"}


class DevIssuer:
    """Mints ES256 tokens for ``issuer``/``audience`` with the locally generated key."""

    def __init__(self, key_dir: Path, *, issuer: str, audience: str) -> None:
        self._key = ensure_key(key_dir)
        self.issuer = issuer
        self.audience = audience
        self.jwk = public_jwk(self._key.public_key())

    @classmethod
    def for_settings(cls, settings: KitSettings) -> DevIssuer:
        """The issuer whose tokens services configured by ``settings`` accept."""
        return cls(
            settings.auth_key_dir, issuer=settings.auth_issuer, audience=settings.auth_audience
        )

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The key services verify with."""
        return self._key.public_key()

    def jwks(self) -> dict[str, Any]:
        """A JWKS document holding the public key (what an identity provider serves)."""
        return {"keys": [self.jwk]}

    def mint(
        self,
        *,
        subject: str,
        tenant: str,
        roles: Iterable[str] = (),
        scopes: Iterable[str] = (),
        ttl_s: int = 3600,
        now: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """A signed token for ``subject`` in ``tenant``."""
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "tenant": tenant,
            "roles": list(roles),
            "scope": " ".join(scopes),
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl_s,
            "jti": uuid.uuid4().hex,
            **(extra or {}),
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.jwk["kid"]})
