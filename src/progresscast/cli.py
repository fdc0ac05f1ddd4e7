"""Command line: ``python -m progresscast COMMAND``.

``token USER [--admin] [--service] [--jobs ID,...] [--ttl SECONDS]`` mints an
access token with the secret in ``PROGRESSCAST_SECRET_KEY`` and prints it
alone on its last line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

SECRET_ENV = "PROGRESSCAST_SECRET_KEY"


def _token(args: argparse.Namespace) -> int:
    from .tokens import issue_token

    secret = os.environ.get(SECRET_ENV)
    if not secret:
        print(f"error: set {SECRET_ENV} to the server's secret", file=sys.stderr)
        return 2
    jobs = [j for j in args.jobs.split(",") if j] if args.jobs else None
    try:
        token = issue_token(
            secret, args.user, ttl=args.ttl, admin=args.admin, service=args.service, jobs=jobs
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    expires = datetime.fromtimestamp(datetime.now(UTC).timestamp() + args.ttl, UTC)
    rights = [r for r, on in (("admin", args.admin), ("service", args.service)) if on]
    if jobs:
        rights.append(f"jobs {','.join(jobs)}")
    print(
        f"# token for {args.user} ({', '.join(rights) or 'own jobs'}),"
        f" expires {expires.isoformat(timespec='seconds')}",
        file=sys.stderr,
    )
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m progresscast", description="progresscast command line"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser(
        "token", help="mint an access token", description=f"Mint a JWT signed with ${SECRET_ENV}."
    )
    token.add_argument("user", help="user id (the token's sub)")
    token.add_argument("--admin", action="store_true", help="may read and cancel every job")
    token.add_argument(
        "--service",
        action="store_true",
        help="a pipeline: may post events to any job, create jobs for any owner",
    )
    token.add_argument("--jobs", help="comma-separated job ids the holder may also read")
    token.add_argument("--ttl", type=float, default=3600, help="seconds valid (default 3600)")
    token.set_defaults(run=_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
