"""Verifying bearer JWTs: who is calling, for which tenant, with which roles and scopes.

PyJWT does the cryptography and the registered-claim checks; this module pins what a
pactmesh token must look like and turns it into the :class:`Identity` the services use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from pactmesh_contracts.envelope import Principal, TenantId
from pydantic import TypeAdapter, ValidationError

from pactmesh_kit.errors import ErrorKind, PactmeshError

# Asymmetric algorithms only: a verifier that accepted HS256 could be fed a token
# signed with the public key as an HMAC secret (algorithm confusion), and "none" is
# never acceptable.
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

TENANT_CLAIM = "tenant"
"""The claim naming the tenant the token acts for."""
ROLES_CLAIM = "roles"
"""The claim listing the subject's roles."""

_TENANT: TypeAdapter[str] = TypeAdapter(TenantId)


class AuthError(PactmeshError):
    """A request's credentials were refused.

    ``code`` follows RFC 6750: ``invalid_token`` (401) or ``insufficient_scope`` (403).
    """

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.kind: ErrorKind = "forbidden" if code == "insufficient_scope" else "unauthorized"
        self.description = description

    @property
    def status_code(self) -> int:
        """The HTTP status this refusal maps to."""
        return self.http_status


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller: the principal that travels in every event, and its tenant."""

    principal: Principal
    tenant: str
    token_id: str | None = None
    expires_at: float | None = None
    """The token's ``exp`` (Unix seconds): how long a verified token may be remembered."""

    @property
    def subject(self) -> str:
        """The caller's stable identifier."""
        return self.principal.subject


class KeySource(Protocol):
    """Finds the public key that should have signed a token."""

    def key_for(self, token: str) -> Any:
        """The verification key for ``token`` (may look at its ``kid`` header)."""
        ...


@dataclass(frozen=True)
class StaticKey:
    """One known public key (the development issuer's)."""

    key: Any

    def key_for(self, token: str) -> Any:
        return self.key


class JwksKeys:
    """Keys from a JWKS URL, fetched on first use and cached (PyJWT's ``PyJWKClient``)."""

    def __init__(self, url: str, *, cache_lifespan_s: int = 300, timeout_s: float = 5.0) -> None:
        self._client = jwt.PyJWKClient(
            url, cache_keys=True, lifespan=cache_lifespan_s, timeout=int(max(1, timeout_s))
        )

    def key_for(self, token: str) -> Any:
        try:
            return self._client.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthError("invalid_token", f"signing keys unavailable: {exc}") from exc
        except jwt.PyJWKClientError as exc:
            raise AuthError("invalid_token", f"no matching signing key: {exc}") from exc


def pin_algorithms(algorithms: Iterable[str]) -> tuple[str, ...]:
    """``algorithms`` as a tuple, refusing symmetric ones and ``none``."""
    pinned = tuple(a.strip() for a in algorithms if a.strip())
    if not pinned:
        raise ValueError("at least one JWT algorithm must be pinned")
    refused = [a for a in pinned if a not in ALLOWED_ALGORITHMS]
    if refused:
        raise ValueError(f"JWT algorithms not allowed: {refused}; use {sorted(ALLOWED_ALGORITHMS)}")
    return pinned


class TokenVerifier:
    """Verifies a compact JWT and returns the caller's :class:`Identity`.

    Checks: signature with one of the pinned algorithms, ``iss``, ``aud``, ``exp`` (and
    ``nbf`` when present) with a small leeway, and that ``sub``, ``iat`` and the
    ``tenant`` claim are present. Roles come from the ``roles`` claim, scopes from the
    space-separated ``scope`` claim (or an ``scp`` list).
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        algorithms: Iterable[str],
        keys: KeySource,
        leeway_s: float = 30.0,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.algorithms = pin_algorithms(algorithms)
        self._keys = keys
        self._leeway = leeway_s
        self.fetches_keys = isinstance(keys, JwksKeys)
        """True when verification may fetch keys over the network (JWKS)."""

    def verify(self, token: str) -> Identity:
        """The identity ``token`` proves; :class:`AuthError` if it proves none."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError as exc:
            raise AuthError("invalid_token", f"malformed token: {exc}") from exc
        if header.get("alg") not in self.algorithms:
            raise AuthError("invalid_token", f"algorithm {header.get('alg')!r} is not accepted")
        key = self._keys.key_for(token)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(self.algorithms),
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("invalid_token", "token expired") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("invalid_token", "token from another issuer") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("invalid_token", "token for another audience") from exc
        except jwt.PyJWTError as exc:
            raise AuthError("invalid_token", f"invalid token: {exc}") from exc
        return _identity(claims)


def _identity(claims: dict[str, Any]) -> Identity:
    tenant = claims.get(TENANT_CLAIM)
    if not isinstance(tenant, str) or not tenant:
        raise AuthError("invalid_token", f"token has no {TENANT_CLAIM!r} claim")
    roles = claims.get(ROLES_CLAIM, [])
    scope = claims.get("scope", claims.get("scp", []))
    scopes = scope.split() if isinstance(scope, str) else scope
    if not isinstance(roles, list) or not isinstance(scopes, list):
        raise AuthError("invalid_token", "roles and scopes must be lists")
    try:
        principal = Principal(subject=str(claims["sub"]), roles=tuple(roles), scopes=tuple(scopes))
    except ValidationError as exc:
        raise AuthError("invalid_token", f"malformed roles or scopes: {exc}") from exc
    try:
        _TENANT.validate_python(tenant)
    except ValidationError as exc:
        raise AuthError("invalid_token", f"malformed tenant {tenant!r}") from exc
    jti = claims.get("jti")
    return Identity(
        principal=principal,
        tenant=tenant,
        token_id=str(jti) if jti else None,
        expires_at=float(claims["exp"]),
    )
