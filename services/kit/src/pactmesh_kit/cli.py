"""``pactmesh``: the command line for local use and operations.

``pactmesh token --role reviewer --tenant acme`` prints a bearer token from the
development issuer (the key is generated under the data directory on first use), so
``curl -H "Authorization: Bearer $(pactmesh token ...)"`` works against ``make run``.

``pactmesh dlq list|show|redrive`` reads the dead-letter topic and publishes dead
letters' originals again (``pactmesh_kit.dlq``), with the Kafka and topic prefix
settings every service reads (``KAFKA_BOOTSTRAP_SERVERS``, ``PACTMESH_TOPIC_PREFIX``).

``pactmesh timeline <request id>`` prints a request's timeline from intake, ``pactmesh
trace <request id>`` its traces from the local span files.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

from pactmesh_contracts.events import DeadLetter

from pactmesh_kit import dlq, timeline_cli
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


def _filters(args: argparse.Namespace) -> dlq.Filters:
    return dlq.Filters(
        services=frozenset(args.service or ()),
        reasons=frozenset(args.reason or ()),
        source_topics=frozenset(args.topic or ()),
        since=dlq.parse_when(args.since) if args.since else None,
        until=dlq.parse_when(args.until) if args.until else None,
    )


def _row(letter: DeadLetter, marked: set[str]) -> str:
    error = (letter.error.splitlines() or [""])[0][:60]
    size = letter.original_size if letter.original_size is not None else "?"
    redriven = "yes" if letter.source_ref in marked else "no"
    return (
        f"{letter.occurred_at:%Y-%m-%d %H:%M:%S}  {letter.service:<12} {letter.error_code:<12} "
        f"{letter.source_ref:<48} {size:>9}  {redriven:<8} {error}"
    )


async def _list(args: argparse.Namespace) -> int:
    settings = KitSettings()
    found = await dlq.dead_letters(settings, _filters(args))
    marked = await dlq.redriven(settings)
    shown = found[-args.limit :] if args.limit else found
    if args.json:
        for item in shown:
            print(item.letter.model_dump_json())
        return 0
    print(
        f"{'OCCURRED (UTC)':<20} {'SERVICE':<12} {'REASON':<12} {'SOURCE':<48} {'BYTES':>9}  "
        f"{'REDRIVEN':<8} ERROR"
    )
    for item in shown:
        print(_row(item.letter, marked))
    print(f"{len(shown)} of {len(found)} dead letter(s) matching", file=sys.stderr)
    return 0


async def _show(args: argparse.Namespace) -> int:
    found = await dlq.find(KitSettings(), args.id)
    if not found:
        print(f"pactmesh dlq: no dead letter {args.id}", file=sys.stderr)
        return 1
    for item in found:
        shown = item.letter.model_dump(mode="json")
        if not args.original:
            shown.pop("original_value_b64")
            shown["original_preview"] = item.letter.original_value()[:500].decode(errors="replace")
        print(json.dumps(shown, indent=2))
    return 0


async def _redrive(args: argparse.Namespace) -> int:
    filters = _filters(args)
    if filters == dlq.Filters() and not args.all:
        print("pactmesh dlq redrive: give a filter, or --all", file=sys.stderr)
        return 2
    settings = KitSettings()
    found = await dlq.dead_letters(settings, filters)
    if args.dry_run:
        marked = await dlq.redriven(settings)
        for item in found:
            print(_row(item.letter, marked))
        return 0
    from tqdm import tqdm

    try:
        async with dlq.Redrive(settings) as redrive:
            with tqdm(total=len(found), unit="letter", desc="redriving", file=sys.stderr) as bar:
                outcome = await redrive.run(found, progress=bar.update)
    except dlq.TakenOver as exc:
        print(f"pactmesh dlq redrive: {exc}", file=sys.stderr)
        return 3
    for letter, why in outcome.failed:
        print(
            f"not redriven: {letter.source_ref} ({letter.dead_letter_id}): {why}", file=sys.stderr
        )
    print(
        f"redriven {len(outcome.redriven)}, already redriven {len(outcome.already)}, "
        f"not redrivable {len(outcome.failed)}"
    )
    return 1 if outcome.failed else 0


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", action="append", help="refusing service (repeatable)")
    parser.add_argument(
        "--reason",
        action="append",
        choices=["undecodable", "invalid", "unknown_type", "refused", "too_large"],
        help="dead-letter code (repeatable)",
    )
    parser.add_argument("--topic", action="append", help="source topic (repeatable)")
    parser.add_argument("--since", help="ISO time or a time ago (30m, 2h, 7d)")
    parser.add_argument("--until", help="ISO time or a time ago")


def _dlq_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq_parser = commands.add_parser("dlq", help="list, show and redrive dead letters")
    actions = dlq_parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="dead letters matching the filters")
    _add_filters(listing)
    listing.add_argument("--limit", type=int, default=0, help="only the last N")
    listing.add_argument("--json", action="store_true", help="one JSON record per line")
    listing.set_defaults(run=lambda a: asyncio.run(_list(a)))
    show = actions.add_parser("show", help="one dead letter, by id or topic/partition/offset")
    show.add_argument("id")
    show.add_argument("--original", action="store_true", help="include the original (base64)")
    show.set_defaults(run=lambda a: asyncio.run(_show(a)))
    redrive = actions.add_parser(
        "redrive", help="publish the originals again on their source topic (once each)"
    )
    _add_filters(redrive)
    redrive.add_argument("--all", action="store_true", help="every dead letter")
    redrive.add_argument("--dry-run", action="store_true", help="list what would be redriven")
    redrive.set_defaults(run=lambda a: asyncio.run(_redrive(a)))


def main(argv: Sequence[str] | None = None) -> int:
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
    _dlq_commands(commands)
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
