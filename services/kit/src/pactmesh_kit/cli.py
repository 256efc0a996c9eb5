"""``pactmesh``: the command line for local use.

``pactmesh token --role reviewer --tenant acme`` prints a bearer token from the
development issuer (the key is generated under the data directory on first use), so
``curl -H "Authorization: Bearer $(pactmesh token ...)"`` works against ``make run``.
"""

from __future__ import annotations

import argparse
import json
import sys

from pactmesh_kit.auth.devissuer import DevIssuer
from pactmesh_kit.settings import KitSettings


def _token(args: argparse.Namespace) -> int:
    settings = KitSettings()
    if settings.auth_jwks_url:
        print(
            "pactmesh token: PACTMESH_AUTH_JWKS_URL is set; tokens come from that identity "
            "provider, not the development issuer",
            file=sys.stderr,
        )
        return 2
    issuer = DevIssuer.for_settings(settings)
    roles = args.role or []
    token = issuer.mint(
        subject=args.subject or f"dev-{roles[0] if roles else 'user'}",
        tenant=args.tenant,
        roles=roles,
        scopes=args.scope or [],
        ttl_s=args.ttl,
    )
    print(token)
    return 0


def _jwks(_args: argparse.Namespace) -> int:
    settings = KitSettings()
    issuer = DevIssuer.for_settings(settings)
    print(json.dumps(issuer.jwks(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pactmesh`` command."""
    parser = argparse.ArgumentParser(prog="pactmesh", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="mint a development bearer token")
    token.add_argument("--role", action="append", help="a role (repeatable)")
    token.add_argument("--scope", action="append", help="a scope (repeatable)")
    token.add_argument("--tenant", default="default", help="tenant (default: default)")
    token.add_argument("--subject", help="subject (default: dev-<first role>)")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.set_defaults(run=_token)
    jwks = commands.add_parser("jwks", help="print the development issuer's public JWKS")
    jwks.set_defaults(run=_jwks)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
