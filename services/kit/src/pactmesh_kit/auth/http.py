"""FastAPI dependencies: authenticate every request, then check the access policy.

The app builder (``pactmesh_kit.app``) puts ``authenticated`` on every route a service
does not explicitly make public. Routes declare what more they need::

    CurrentReader = Annotated[Identity, Depends(require("things:read"))]

    @router.get("/things")
    async def things(reader: CurrentReader): ...

A missing, malformed, expired or foreign token is a 401 with an RFC 6750
``WWW-Authenticate`` header; a valid token without the capability is a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pactmesh_kit.auth.devissuer import DevIssuer
from pactmesh_kit.auth.policy import AccessPolicy, load_access_policy
from pactmesh_kit.auth.tokens import AuthError, Identity, JwksKeys, StaticKey, TokenVerifier
from pactmesh_kit.settings import KitSettings

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="OAuth2 bearer JWT (`pactmesh token --role ... --tenant ...` locally).",
)


class Authenticator:
    """The token verifier and the access policy of one service."""

    def __init__(self, verifier: TokenVerifier, policy: AccessPolicy) -> None:
        self.verifier = verifier
        self.policy = policy

    @classmethod
    def from_settings(cls, settings: KitSettings) -> Authenticator:
        """JWKS when ``auth_jwks_url`` is set, else the development issuer's key."""
        algorithms = settings.auth_algorithms.split(",")
        if settings.auth_jwks_url:
            keys: JwksKeys | StaticKey = JwksKeys(settings.auth_jwks_url)
        else:
            keys = StaticKey(DevIssuer.for_settings(settings).public_key)
        verifier = TokenVerifier(
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            algorithms=algorithms,
            keys=keys,
        )
        return cls(verifier, load_access_policy(settings.access_policy_file))


def _quotable(text: str) -> str:
    """``text`` as RFC 6750 allows inside ``error_description="..."`` (visible ASCII but
    quote and backslash): a description echoing a request's value (a NUL byte, a newline)
    would otherwise make an invalid header, which the server answers with a 500."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


def _challenge(error: AuthError) -> HTTPException:
    header = f'Bearer error="{error.code}", error_description="{_quotable(error.description)}"'
    return HTTPException(error.status_code, error.description, {"WWW-Authenticate": header})


def get_authenticator(request: Request) -> Authenticator:
    """The app's authenticator (``app.state.authenticator``)."""
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


async def authenticated(
    request: Request,
    authenticator: AuthenticatorDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Identity:
    """The verified caller; 401 without a valid bearer token."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "bearer token required",
            {"WWW-Authenticate": "Bearer"},
        )
    try:
        # JWKS mode may fetch keys over HTTP (cached afterwards): keep that off the loop.
        if authenticator.verifier.fetches_keys:
            identity = await run_in_threadpool(
                authenticator.verifier.verify, credentials.credentials
            )
        else:
            identity = authenticator.verifier.verify(credentials.credentials)
    except AuthError as exc:
        raise _challenge(exc) from exc
    request.state.identity = identity
    return identity


CurrentPrincipal = Annotated[Identity, Depends(authenticated)]
"""The verified caller (any valid token): its principal and tenant."""


def require(capability: str) -> Callable[..., Identity]:
    """A dependency: the caller, who must hold API ``capability``; 403 otherwise."""

    def check(identity: CurrentPrincipal, authenticator: AuthenticatorDep) -> Identity:
        if not authenticator.policy.can(identity.principal, capability):
            raise _challenge(
                AuthError("insufficient_scope", f"{capability!r} is not granted to this token")
            )
        return identity

    check.__name__ = f"require_{capability.replace(':', '_')}"
    return check


def forbid(description: str) -> HTTPException:
    """A 403 in the same shape as the policy checks' (for route-level checks)."""
    return _challenge(AuthError("insufficient_scope", description))
