"""Minting tokens in tests the way a real client gets them (from the dev issuer)."""

from __future__ import annotations

from collections.abc import Iterable

from pactmesh_kit.auth.devissuer import DevIssuer
from pactmesh_kit.settings import KitSettings


def bearer(
    settings: KitSettings,
    *,
    tenant: str = "default",
    roles: Iterable[str] = ("requester",),
    scopes: Iterable[str] = (),
    subject: str | None = None,
    ttl_s: int = 3600,
) -> dict[str, str]:
    """An ``Authorization`` header for a fresh token."""
    roles = tuple(roles)
    token = DevIssuer.for_settings(settings).mint(
        subject=subject or f"test-{roles[0] if roles else 'user'}",
        tenant=tenant,
        roles=roles,
        scopes=scopes,
        ttl_s=ttl_s,
    )
    return {"Authorization": f"Bearer {token}"}
