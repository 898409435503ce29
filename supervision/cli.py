"""The `orderdesk` command.

Server commands: `serve` (the gateway), `venue` (a standalone paper venue), `migrate`,
`prune` (the store's retention, as the daily job does it) and `cluster` (the owners of a
[cluster], read from Redis and Postgres).
Operator commands, which talk to a running server's `/admin/*` routes over HTTP with the admin
token: `status`, `actors`, `restart ACCOUNT`, `credentials ACCOUNT`,
`rotate-token ACCOUNT NAME`.

Exit codes of the operator commands, for scripts and deploy checks: 0 healthy (or done),
1 degraded (or the server refused the request: unknown account, invalid input), 2 unreachable
(connection refused, timeout, not an orderdesk server, or the admin token was refused).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from web.settings import DEFAULT_BIND

from ._admin_client import DEFAULT_TIMEOUT_S, DEFAULT_URL, EXIT_UNREACHABLE
from ._cluster_command import run_cluster
from ._operator import run_actors, run_credentials, run_restart, run_rotate_token, run_status
from ._serve_commands import run_migrate, run_prune, run_serve, run_venue
from ._startup import StartupError
from .settings import DEFAULT_VENUE_BIND, ConfigError

DEFAULT_WATCH_S = 2.0

_REACH = (
    "It talks to a running `orderdesk serve` over HTTP: --url (default $ORDERDESK_URL or "
    f"{DEFAULT_URL}) with the admin token from --token, $ORDERDESK_ADMIN_TOKEN, or the "
    "admin_token of var/secrets.json ($ORDERDESK_VAR) that a configless serve generated."
)
_EXITS = "Exit status: 0 healthy, 1 degraded, 2 unreachable (or admin token refused)."


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # httpx logs every request's URL at INFO, query and all: a request forwarded to the owner
    # ([cluster]) may carry the client's `access_token` there. Our own request log redacts it.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"orderdesk: configuration error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except StartupError as exc:  # a busy port, an unreachable store: one line, no traceback
        print(f"orderdesk: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:  # the servers stop on SIGINT by design; a client was cut short
        return 0 if args.command in ("serve", "venue", "migrate", "prune") else 130


# -- the parser -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderdesk",
        description="Order gateway for F&O traders (Kite Connect v3). "
        "Server configuration: --config PATH or ORDERDESK_CONFIG; with none, embedded defaults. "
        "The operator commands (status, actors, restart, credentials, rotate-token) reach a "
        f"running server at --url (default $ORDERDESK_URL or {DEFAULT_URL}) with the admin token.",
    )
    parser.set_defaults(log_level=logging.WARNING)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_server_commands(commands)
    _add_operator_commands(commands)
    return parser


def _add_server_commands(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the gateway (web front, account actors, store, embedded paper venue)",
        description="Run the gateway until SIGINT/SIGTERM. The web front listens on --bind "
        f"(or $ORDERDESK_BIND, [server].bind, default {DEFAULT_BIND}); the operator commands "
        "reach it there.",
    )
    serve.add_argument("--config", help="orderdesk.toml (default: ORDERDESK_CONFIG or none)")
    serve.add_argument("--bind", help="HOST:PORT for the web front (default from config)")
    serve.set_defaults(run=run_serve, log_level=logging.INFO)

    venue = commands.add_parser(
        "venue",
        help="run the paper venue as its own process",
        description="Serve the Kite-compatible paper venue (REST + ticker) on HOST:PORT. "
        "Point accounts' rest_url/ticker_url at it in a config without [venue].",
    )
    venue.add_argument("--config", help="orderdesk.toml: its [venue] and paper accounts")
    venue.add_argument("--bind", help=f"HOST:PORT (default {DEFAULT_VENUE_BIND})")
    venue.add_argument("--instruments", help="a Kite instruments CSV to load")
    venue.add_argument(
        "--state", metavar="FILE",
        help="where orders, positions and the last order id are kept across restarts, or "
        "'memory' (default: [venue].state, else $ORDERDESK_VAR/venue-standalone.json)",
    )
    venue.add_argument(
        "--accounts", help="comma-separated paper account ids (default: from config)"
    )
    venue.set_defaults(run=run_venue, log_level=logging.INFO)

    migrate = commands.add_parser(
        "migrate",
        help="apply store migrations and exit",
        description="Apply the store's schema migrations to DATABASE_URL / [database].url.",
    )
    migrate.add_argument("--config", help="orderdesk.toml")
    migrate.set_defaults(run=run_migrate, log_level=logging.INFO)

    cluster = commands.add_parser(
        "cluster",
        help="the nodes and account owners of a [cluster] (exit 0 healthy, 1 degraded, "
        "2 unreachable)",
        description="Show the cluster as Redis and Postgres see it, whichever node is up: the "
        "nodes (alive: seen within one lease time), each account's owner, lease left and age, "
        "and epoch. Reads [cluster] and [database] of --config / ORDERDESK_CONFIG. Exit status: "
        "0 every account has a live owner, 1 degraded (an account without one, or a takeover "
        "under way), 2 Redis or Postgres unreachable.",
    )
    cluster.add_argument("--config", help="orderdesk.toml (default: ORDERDESK_CONFIG)")
    cluster.add_argument("--json", action="store_true", help="print the report as JSON")
    cluster.set_defaults(run=run_cluster)

    prune = commands.add_parser(
        "prune",
        help="delete what the store keeps beyond [retention] days, then exit",
        description="Delete order events, orders, batches and webhook deliveries older than "
                    "[retention] days (today included) from DATABASE_URL / [database].url, as "
                    "the server's daily job does at [retention] prune_at. Never deleted: "
                    "today's, each account's last seq, what webhooks have not taken, open "
                    "orders, unfinished batches, the audit log.",
    )
    prune.add_argument("--config", help="orderdesk.toml")
    prune.add_argument("--days", type=_whole, help="days to keep, today included "
                                                   "(default: [retention] days, 7)")
    prune.set_defaults(run=run_prune, log_level=logging.INFO)


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        help=f"the server's base URL (default: $ORDERDESK_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        help="the admin token (default: $ORDERDESK_ADMIN_TOKEN, else var/secrets.json)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=DEFAULT_TIMEOUT_S,
        help=f"seconds to wait for the server (default {DEFAULT_TIMEOUT_S:g})",
    )


def _add_operator_commands(commands: Any) -> None:
    for name, summary, run in (
        ("status", "one-table summary of the running server's supervision tree", run_status),
        ("actors", "one row per supervised child and account actor", run_actors),
    ):
        cmd = commands.add_parser(
            name,
            help=f"{summary} (exit 0 healthy, 1 degraded, 2 unreachable)",
            description=f"Print the {summary}, as GET /admin/actors reports it. "
            f"{_REACH} {_EXITS}",
        )
        _server_options(cmd)
        cmd.add_argument("--json", action="store_true", help="print the raw JSON answer")
        cmd.add_argument(
            "--watch",
            nargs="?",
            type=_positive,
            const=DEFAULT_WATCH_S,
            metavar="SECONDS",
            help=f"refresh in place every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C; "
            "the exit status is the last refresh's",
        )
        cmd.set_defaults(run=run)

    restart = commands.add_parser(
        "restart",
        help="restart one account's actor in the running server",
        description="Restart the actor of ACCOUNT (POST /admin/accounts/ACCOUNT/restart): it "
        "reloads its order book, reconnects upstream and reconciles; subscribers stay "
        f"connected. {_REACH} Exit status: 0 restarted, 1 refused (unknown account), "
        "2 unreachable.",
    )
    _server_options(restart)
    restart.add_argument("account", metavar="ACCOUNT", help="the account id")
    restart.set_defaults(run=run_restart)

    credentials = commands.add_parser(
        "credentials",
        help="load a new broker access token into a running account actor",
        description="Load the day's Kite access token into ACCOUNT's running actor "
        "(PUT /admin/accounts/ACCOUNT/credentials): an actor parked in auth_expired reconnects "
        "at once; no restart. The token comes from --access-token or, safer (it stays out of "
        f"the process list and shell history), from standard input. {_REACH} Exit status: "
        "0 loaded, 1 refused (unknown account, invalid token, or a token the broker refuses), "
        "2 unreachable.",
    )
    _server_options(credentials)
    credentials.add_argument("account", metavar="ACCOUNT", help="the account id")
    credentials.add_argument(
        "--access-token", help="the new access token (default: read from standard input)"
    )
    credentials.set_defaults(run=run_credentials)

    rotate = commands.add_parser(
        "rotate-token",
        help="give a client token of an account a new value in the running server",
        description="Rotate ACCOUNT's client token NAME (PUT /admin/accounts/ACCOUNT/tokens/"
        "NAME): the server picks a new random value, printed alone on standard output; the "
        "old value is refused at once, and the browser sessions signed in with it end (their "
        "sockets close 4401). The new value lives in memory: put it into orderdesk.toml too. "
        f"{_REACH} Exit status: 0 rotated, 1 refused (unknown account or token name), "
        "2 unreachable.",
    )
    _server_options(rotate)
    rotate.add_argument("account", metavar="ACCOUNT", help="the account id")
    rotate.add_argument("name", metavar="NAME", help="the token's name in orderdesk.toml")
    rotate.set_defaults(run=run_rotate_token)


def _whole(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"a whole number >= 1, not {value!r}")
    return int(value)


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return number


if __name__ == "__main__":
    raise SystemExit(main())
