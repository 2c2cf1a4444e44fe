"""``python -m devtools.servicenow_standin`` (also ``edge-agent standin``): serve until stopped."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import List, Optional, Tuple

from .auth import DEFAULT_TOKEN_TTL
from .standin import ServiceNowStandIn


def _credential(text: str) -> Tuple[str, str]:
    name, sep, secret = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME:SECRET")
    return name, secret


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("a rate is between 0 and 1")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.servicenow_standin",
        description="Serve a local stand-in for the ServiceNow Table API (incident table).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=8080, help="port, 0 for any free one (default %(default)s)"
    )
    parser.add_argument(
        "--db",
        default="./servicenow-standin.sqlite3",
        help="SQLite file, or :memory: (default %(default)s)",
    )
    parser.add_argument(
        "--user",
        action="append",
        type=_credential,
        metavar="USER:PASSWORD",
        help="a user for Basic auth and the OAuth password grant; repeatable (default admin:admin)",
    )
    parser.add_argument(
        "--oauth-client",
        action="append",
        type=_credential,
        metavar="CLIENT_ID:SECRET",
        help="an OAuth client for /oauth_token.do; repeatable",
    )
    parser.add_argument(
        "--token-ttl",
        type=_non_negative,
        default=DEFAULT_TOKEN_TTL,
        help="access token lifetime in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--latency", type=_non_negative, default=0.0, help="seconds added to every response"
    )
    parser.add_argument(
        "--commit-delay",
        type=_non_negative,
        default=0.0,
        help="seconds a table write takes before it is stored (a slow instance)",
    )
    parser.add_argument(
        "--fail-rate", type=_rate, default=0.0, help="share of requests answered with a 5xx"
    )
    parser.add_argument(
        "--fail-status", type=int, default=503, help="status of those (default %(default)s)"
    )
    parser.add_argument(
        "--rate-limit-rate", type=_rate, default=0.0, help="share of requests answered with 429"
    )
    parser.add_argument(
        "--retry-after",
        type=int,
        default=30,
        help="Retry-After seconds on a 429 (default %(default)s)",
    )
    parser.add_argument(
        "--drop-rate", type=_rate, default=0.0, help="share of connections dropped unanswered"
    )
    parser.add_argument(
        "--role",
        action="append",
        default=[],
        metavar="USER=ROLE[,ROLE]",
        help="give USER exactly these roles (itil, cmdb_read, evt_mgmt_integration, ...); "
        "a user given none is an administrator; repeatable",
    )
    parser.add_argument(
        "--ci",
        action="append",
        default=[],
        metavar="NAME",
        help="a configuration item in cmdb_ci (its sys_id is printed); repeatable",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        metavar="N",
        help="requests per user per hour before 429 (sent as X-RateLimit-Limit on every answer)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for the random faults")
    parser.add_argument("--log-level", default="INFO", help="logging level (default %(default)s)")
    parser.add_argument(
        "--admin-token-env",
        metavar="NAME",
        help="turn on the control API under /__standin/ (for tests driving this process), "
        "with the token read from environment variable NAME",
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Serve until Ctrl-C (or SIGTERM). Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 500 <= args.fail_status <= 599:
        parser.error("--fail-status must be a 5xx status")
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    admin_token = None
    if args.admin_token_env:
        admin_token = os.environ.get(args.admin_token_env)
        if not admin_token:
            parser.error(f"--admin-token-env: environment variable {args.admin_token_env} is empty")
    users = dict(args.user) if args.user else {"admin": "admin"}
    clients = dict(args.oauth_client) if args.oauth_client else {}
    standin = ServiceNowStandIn(
        db_path=args.db,
        users=users,
        host=args.host,
        port=args.port,
        oauth_clients=clients,
        token_ttl=args.token_ttl,
        seed=args.seed,
        admin_token=admin_token,
    )
    faults = standin.faults
    faults.latency = args.latency
    faults.commit_delay = args.commit_delay
    faults.fail_rate = args.fail_rate
    faults.fail_status = args.fail_status
    faults.rate_limit_rate = args.rate_limit_rate
    faults.retry_after = args.retry_after
    faults.drop_rate = args.drop_rate
    for item in args.role:
        user, sep, roles = item.partition("=")
        if not sep or not user:
            parser.error(f"--role takes USER=ROLE[,ROLE], got {item!r}")
        standin.set_roles(user, [r.strip() for r in roles.split(",") if r.strip()])
    if args.rate_limit is not None:
        if args.rate_limit < 1:
            parser.error("--rate-limit must be 1 or more")
        standin.rate_rule.limit = args.rate_limit
    cis = [(name, standin.cmdb.add(name)) for name in args.ci]
    try:
        standin.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # Usernames and client ids only: passwords and secrets are never printed.
    print(f"ServiceNow stand-in listening on {standin.url}", flush=True)
    print(f"  users: {', '.join(sorted(users))}", flush=True)
    if clients:
        print(f"  oauth clients: {', '.join(sorted(clients))}", flush=True)
    print(f"  database: {args.db}", flush=True)
    for name, sys_id in cis:
        print(f"  cmdb_ci {name}: {sys_id}", flush=True)
    print("  events: POST /api/global/em/jsonv2 (alerts are logged)", flush=True)
    if admin_token:
        print("  control API: /__standin/ (token from the environment)", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print("stopped", flush=True)
    return 0
