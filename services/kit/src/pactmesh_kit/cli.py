"""``pactmesh``: the command line for local use.

``pactmesh token --role reviewer --tenant acme`` prints a bearer token from the
development issuer (the key is generated under the data directory on first use), so
``curl -H "Authorization: Bearer $(pactmesh token ...)"`` works against ``make run``.
``pactmesh timeline <request id>`` prints a request's timeline from intake, ``pactmesh
trace <request id>`` its traces from the local span files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from pactmesh_kit import timeline_cli
from pactmesh_kit.auth.devissuer import DevIssuer
from pactmesh_kit.settings import KitSettings

INTAKE_URL = "http://127.0.0.1:8000"


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


def _timeline(args: argparse.Namespace) -> int:
    settings = KitSettings()
    token = args.token or os.environ.get("PACTMESH_TOKEN")
    if token is None:
        if settings.auth_jwks_url:
            print("pactmesh timeline: give --token (or PACTMESH_TOKEN)", file=sys.stderr)
            return 2
        # Locally: an auditor of the tenant, from the development issuer.
        issuer = DevIssuer.for_settings(settings)
        token = issuer.mint(subject="dev-auditor", tenant=args.tenant, roles=["auditor"], scopes=[])
    try:
        found = timeline_cli.fetch_timeline(args.url, args.request_id, token)
    except LookupError as exc:
        print(f"pactmesh timeline: {exc}", file=sys.stderr)
        return 1
    print(timeline_cli.render_timeline(found))
    return 0


def _trace(args: argparse.Namespace) -> int:
    where = timeline_cli.trace_dir(KitSettings().data_dir)
    spans = timeline_cli.request_spans(timeline_cli.read_spans(where), args.request_id)
    if not spans:
        print(f"pactmesh trace: no span of {args.request_id} in {where}", file=sys.stderr)
        return 1
    print(timeline_cli.render_trace(spans))
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
    timeline = commands.add_parser("timeline", help="print a request's timeline (from intake)")
    timeline.add_argument("request_id")
    timeline.add_argument("--url", default=os.environ.get("PACTMESH_INTAKE_URL", INTAKE_URL))
    timeline.add_argument(
        "--token",
        help="bearer token (default: PACTMESH_TOKEN, or locally a development auditor of --tenant)",
    )
    timeline.add_argument("--tenant", default="default", help="tenant (default: default)")
    timeline.set_defaults(run=_timeline)
    trace = commands.add_parser(
        "trace", help="print a request's traces from the local span files (no Docker needed)"
    )
    trace.add_argument("request_id")
    trace.set_defaults(run=_trace)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
