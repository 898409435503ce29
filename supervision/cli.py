"""The `orderdesk` command.

Server commands: `serve` (the gateway), `venue` (a standalone paper venue), `migrate`.
Operator commands, which talk to a running server's `/admin/*` routes over HTTP with the admin
token: `status`, `actors`, `restart ACCOUNT`, `credentials ACCOUNT`.

Exit codes of the operator commands, for scripts and deploy checks: 0 healthy (or done),
1 degraded (or the server refused the request: unknown account, invalid input), 2 unreachable
(connection refused, timeout, not an orderdesk server, or the admin token was refused).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx

from .settings import DEFAULT_BIND, DEFAULT_VENUE_BIND, ConfigError, Settings, load_settings

log = logging.getLogger("orderdesk")

EXIT_OK = 0
EXIT_DEGRADED = 1  # also: the server answered and refused (404, 422, 503)
EXIT_UNREACHABLE = 2  # also: configuration errors of the server commands

DEFAULT_URL = f"http://{DEFAULT_BIND}"
DEFAULT_TIMEOUT_S = 10.0
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
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"orderdesk: configuration error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:  # the servers stop on SIGINT by design; a client was cut short
        return 0 if args.command in ("serve", "venue", "migrate") else 130


# -- the parser -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderdesk",
        description="Order gateway for F&O traders (Kite Connect v3). "
        "Server configuration: --config PATH or ORDERDESK_CONFIG; with none, embedded defaults. "
        "The operator commands (status, actors, restart, credentials) reach a running server "
        f"at --url (default $ORDERDESK_URL or {DEFAULT_URL}) with the admin token.",
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
    serve.set_defaults(run=_serve, log_level=logging.INFO)

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
        "--accounts", help="comma-separated paper account ids (default: from config)"
    )
    venue.set_defaults(run=_venue, log_level=logging.INFO)

    migrate = commands.add_parser(
        "migrate",
        help="apply store migrations and exit",
        description="Apply the store's schema migrations to DATABASE_URL / [database].url.",
    )
    migrate.add_argument("--config", help="orderdesk.toml")
    migrate.set_defaults(run=_migrate, log_level=logging.INFO)


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
        ("status", "one-table summary of the running server's supervision tree", _status),
        ("actors", "one row per supervised child and account actor", _actors),
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
    restart.set_defaults(run=_restart)

    credentials = commands.add_parser(
        "credentials",
        help="load a new broker access token into a running account actor",
        description="Load the day's Kite access token into ACCOUNT's running actor "
        "(PUT /admin/accounts/ACCOUNT/credentials): an actor parked in auth_expired reconnects "
        "at once; no restart. The token comes from --access-token or, safer (it stays out of "
        f"the process list and shell history), from standard input. {_REACH} Exit status: "
        "0 loaded, 1 refused (unknown account, invalid token), 2 unreachable.",
    )
    _server_options(credentials)
    credentials.add_argument("account", metavar="ACCOUNT", help="the account id")
    credentials.add_argument(
        "--access-token", help="the new access token (default: read from standard input)"
    )
    credentials.set_defaults(run=_credentials)


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value!r}")
    return number


# -- server commands ----------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    if getattr(args, "bind", None) and args.command == "serve":
        settings = attrs.evolve(settings, bind=args.bind)
    return settings


def _serve(args: argparse.Namespace) -> int:
    import trio_asyncio

    from web import install_log_context
    from web.middleware import RedactingFilter

    from .service import serve

    install_log_context()  # every log line of a request carries its correlation id
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"
        ))
    settings = _settings(args)
    if settings.generated_secrets.get("_new"):
        print(
            f"orderdesk: generated tokens (kept in {settings.var_dir / 'secrets.json'}):\n"
            f"  account 'primary' token: {settings.generated_secrets['primary_token']}\n"
            f"  admin token:             {settings.generated_secrets['admin_token']}",
            flush=True,
        )
    trio_asyncio.run(serve, settings)
    return 0


def _venue(args: argparse.Namespace) -> int:
    import trio

    from brokers.paper import VenueConfig, serve_venue

    settings = load_settings(args.config) if args.config else None
    config = (settings.venue if settings and settings.venue else None) or VenueConfig()
    if settings is not None:
        paper = tuple(a.id for a in settings.accounts if a.broker == "paper")
        config = attrs.evolve(config, accounts=paper or config.accounts)
    if args.accounts:
        config = attrs.evolve(config, accounts=tuple(args.accounts.split(",")))
    if args.bind:
        config = attrs.evolve(config, bind=args.bind)
    if args.instruments:
        config = attrs.evolve(config, instruments_csv=args.instruments)

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                address = await nursery.start(serve_venue, config)
                print(f"orderdesk venue: REST {address.rest_url}  ticker {address.ticker_url}",
                      flush=True)
                async for signum in signals:
                    log.info("signal %s: stopping the venue", signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()

    trio.run(run)
    return 0


def _migrate(args: argparse.Namespace) -> int:
    import trio_asyncio

    from store import migrate

    settings = _settings(args)
    trio_asyncio.run(migrate, settings.database_url)
    print(f"orderdesk: store migrated ({_redact_url(settings.database_url)})")
    return 0


def _redact_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


# -- talking to a running server -----------------------------------------------------------------


class Unreachable(Exception):
    """No usable answer: refused, timed out, not orderdesk, or the admin token was refused."""


class Refused(Exception):
    """The server answered and said no (unknown account, invalid input, unavailable)."""


@attrs.frozen
class AdminClient:
    """A short-lived, synchronous client of one server's `/admin/*` routes."""

    url: str
    token: str | None = attrs.field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, environ: Mapping[str, str] | None = None
    ) -> AdminClient:
        env = os.environ if environ is None else environ
        url = (args.url or env.get("ORDERDESK_URL") or DEFAULT_URL).rstrip("/")
        if "://" not in url:
            url = f"http://{url}"
        return cls(url, _admin_token(args.token, env), args.timeout)

    def open(self) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)

    def call(
        self, http: httpx.Client, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any]:
        try:
            response = http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise Unreachable(f"{self.url} did not answer within {self.timeout:g}s") from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.url}: {_reason(exc)}") from None
        body = _json_or_none(response)
        if response.status_code in (401, 403):
            what = "no admin token was given" if not self.token else "the admin token was refused"
            raise Unreachable(
                f"{self.url} answered {response.status_code} "
                f"{_message(body) or response.reason_phrase}: {what} "
                "(pass --token or set ORDERDESK_ADMIN_TOKEN)"
            )
        if not isinstance(body, dict):
            raise Unreachable(
                f"{self.url}{path} answered {response.status_code} without JSON: "
                "is this an orderdesk server?"
            )
        if response.status_code == 404 and path == "/admin/actors":
            raise Unreachable(f"{self.url} has no {path}: is this an orderdesk server?")
        if response.status_code >= 400:
            raise Refused(f"{response.status_code} {_message(body) or response.reason_phrase}")
        return body


def _admin_token(explicit: str | None, env: Mapping[str, str]) -> str | None:
    if explicit:
        return explicit
    if env.get("ORDERDESK_ADMIN_TOKEN"):
        return env["ORDERDESK_ADMIN_TOKEN"]
    path = Path(env.get("ORDERDESK_VAR", "var")) / "secrets.json"
    try:
        token = json.loads(path.read_text()).get("admin_token")
    except (OSError, ValueError, AttributeError):
        return None
    return token if isinstance(token, str) and token else None


def _reason(exc: httpx.HTTPError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused (is `orderdesk serve` running there?)"
    return text


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _message(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    message = str(body.get("message") or body.get("error") or "")
    fields = body.get("fields") or []
    details = "; ".join(
        f"{f.get('path')}: {f.get('message')}" for f in fields if isinstance(f, dict)
    )
    return f"{message} ({details})" if details else message


def _fail(exc: Exception) -> int:
    print(f"orderdesk: {exc}", file=sys.stderr)
    return EXIT_UNREACHABLE if isinstance(exc, Unreachable) else EXIT_DEGRADED


# -- status and actors ---------------------------------------------------------------------------


def _tree_ok(body: Mapping[str, Any]) -> bool:
    if "ok" in body:
        return bool(body["ok"])
    return bool((body.get("summary") or {}).get("ok"))


def _entries(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries = body.get("actors")
    if entries is None:
        entries = body.get("children")  # the earlier shape of /admin/actors
    return [e for e in entries or [] if isinstance(e, dict)]


def _status(args: argparse.Namespace) -> int:
    return _show(args, _status_table)


def _actors(args: argparse.Namespace) -> int:
    return _show(args, _actors_table)


def _show(args: argparse.Namespace, render: Callable[[str, dict[str, Any]], Any]) -> int:
    from rich.console import Console

    client = AdminClient.from_args(args)
    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))

    def fetch(http: httpx.Client) -> tuple[int, dict[str, Any] | None, str | None]:
        try:
            body = client.call(http, "GET", "/admin/actors")
        except (Unreachable, Refused) as exc:
            return EXIT_UNREACHABLE, None, str(exc)
        return (EXIT_OK if _tree_ok(body) else EXIT_DEGRADED), body, None

    with client.open() as http:
        if args.watch is None:
            code, body, error = fetch(http)
            if body is None:
                print(f"orderdesk: {error}", file=sys.stderr)
            elif args.json:
                print(json.dumps(body, indent=2, sort_keys=True))
            else:
                console.print(render(client.url, body))
            return code
        return _watch(console, args, lambda: fetch(http), lambda body: render(client.url, body))


def _watch(
    console: Any,
    args: argparse.Namespace,
    fetch: Callable[[], tuple[int, dict[str, Any] | None, str | None]],
    render: Callable[[dict[str, Any]], Any],
) -> int:
    """Refresh every `args.watch` seconds until Ctrl-C; the last refresh's exit status."""
    from rich.live import Live
    from rich.text import Text

    code = EXIT_UNREACHABLE
    try:
        if args.json:  # one JSON document per line, for piping
            while True:
                code, body, error = fetch()
                if body is None:
                    print(f"orderdesk: {error}", file=sys.stderr, flush=True)
                else:
                    print(json.dumps(body, sort_keys=True), flush=True)
                time.sleep(args.watch)
        with Live(console=console, auto_refresh=False, screen=False) as live:
            while True:
                code, body, error = fetch()
                stamp = Text(time.strftime("%H:%M:%S") + f"  every {args.watch:g}s, Ctrl-C "
                             "to stop", style="dim")
                if body is None:
                    view: Any = Text(f"orderdesk: {error}", style="bold red")
                else:
                    view = render(body)
                live.update(_group(view, stamp), refresh=True)
                time.sleep(args.watch)
    except KeyboardInterrupt:
        pass
    return code


def _group(*renderables: Any) -> Any:
    from rich.console import Group

    return Group(*renderables)


def _status_table(url: str, body: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    summary = body.get("summary") or {}
    ok = _tree_ok(body)
    table = Table(title=f"orderdesk at {url}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("overall", Text("ok", style="bold green") if ok else
                  Text("degraded", style="bold red"))
    table.add_row("children", str(summary.get("total", len(_entries(body)))))
    for state, count in sorted((summary.get("states") or {}).items()):
        table.add_row(f"  {state}", Text(str(count), style=_state_style(state)))
    degraded = summary.get("degraded") or []
    table.add_row("degraded", Text(", ".join(degraded), style="red") if degraded else "-")
    accounts = body.get("accounts") or {}
    if accounts:
        upstreams = ", ".join(
            f"{aid} {status.get('upstream', '?')}" for aid, status in sorted(accounts.items())
        )
        table.add_row("upstreams", upstreams)
    return table


def _actors_table(url: str, body: dict[str, Any]) -> Any:
    from rich.table import Table
    from rich.text import Text

    accounts = body.get("accounts") or {}
    table = Table(title=f"orderdesk at {url}", title_justify="left")
    for column, justify in (
        ("name", "left"), ("kind", "left"), ("state", "left"), ("restarts", "right"),
        ("upstream", "left"), ("subscribers", "right"), ("last event", "right"),
        ("last error", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for entry in _entries(body):
        name = str(entry.get("name", "?"))
        account = accounts.get(name.removeprefix("account:"), {}) if name.startswith(
            "account:") else {}
        upstream = account.get("upstream") or entry.get("upstream")
        subscribers = account.get("subscribers", entry.get("subscribers"))
        state = str(entry.get("state", "?"))
        style = "red" if entry.get("degraded") else _state_style(state)
        table.add_row(
            name,
            str(entry.get("kind", "")),
            Text(state, style=style),
            str(entry.get("restarts", 0)),
            Text(str(upstream or "-"), style="red" if upstream == "auth_expired" else ""),
            "-" if subscribers is None or entry.get("kind") != "actor" else str(subscribers),
            _age(entry.get("last_event_age_s")),
            _error(entry.get("last_error")) or _error(account.get("last_error")),
        )
    return table


def _state_style(state: str) -> str:
    return {"running": "green", "backoff": "yellow", "starting": "yellow", "failed": "bold red",
            "stopped": "dim"}.get(state, "")


def _age(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _error(error: Any, width: int = 60) -> str:
    if not error:
        return ""
    if isinstance(error, dict):
        text = f"{error.get('type', 'Error')}: {error.get('message', '')}"
    else:
        text = str(error)
    return text if len(text) <= width else text[: width - 1] + "…"


# -- restart and credentials -----------------------------------------------------------------------


def _restart(args: argparse.Namespace) -> int:
    client = AdminClient.from_args(args)
    try:
        with client.open() as http:
            body = client.call(http, "POST", f"/admin/accounts/{_segment(args.account)}/restart")
    except (Unreachable, Refused) as exc:
        return _fail(exc)
    print(
        f"orderdesk: account {args.account}: actor restarted "
        f"(state {body.get('state')}, restarts {body.get('restarts')})"
    )
    return EXIT_OK


def _credentials(args: argparse.Namespace) -> int:
    token = args.access_token
    if token is None:
        if sys.stdin.isatty():
            token = getpass.getpass(f"access token for {args.account}: ")
        else:
            token = sys.stdin.read()
    token = token.strip()
    if not token:
        print("orderdesk: no access token given (--access-token or standard input)",
              file=sys.stderr)
        return EXIT_DEGRADED
    client = AdminClient.from_args(args)
    path = f"/admin/accounts/{_segment(args.account)}/credentials"
    try:
        with client.open() as http:
            body = client.call(http, "PUT", path, json={"access_token": token})
    except (Unreachable, Refused) as exc:
        return _fail(exc)
    before = body.get("upstream_before")
    print(
        f"orderdesk: account {args.account}: new access token loaded"
        + (f" (upstream was {before})" if before else "")
    )
    return EXIT_OK


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


if __name__ == "__main__":
    raise SystemExit(main())
