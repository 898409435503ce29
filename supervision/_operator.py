"""The operator commands of `orderdesk`: `status`, `actors`, `restart` and `credentials`.

They talk to a running server through `AdminClient`; `status` and `actors` render its
`GET /admin/actors` answer as rich tables (or raw JSON), once or refreshed with `--watch`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from ._admin_client import (
    EXIT_DEGRADED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    AdminClient,
    Refused,
    Unreachable,
    fail,
)

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


def run_status(args: argparse.Namespace) -> int:
    return _show(args, _status_table)


def run_actors(args: argparse.Namespace) -> int:
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
    for entry in _entries(body):
        reasons = [str(r.get("message", r)) for r in entry.get("reasons") or []
                   if isinstance(r, dict)]
        if reasons:
            table.add_row(f"  {entry.get('name', '?')}", Text("; ".join(reasons), style="red"))
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


# -- restart, credentials and token rotation ------------------------------------------------------


def run_restart(args: argparse.Namespace) -> int:
    client = AdminClient.from_args(args)
    try:
        with client.open() as http:
            body = client.call(http, "POST", f"/admin/accounts/{_segment(args.account)}/restart")
    except (Unreachable, Refused) as exc:
        return fail(exc)
    print(
        f"orderdesk: account {args.account}: actor restarted "
        f"(state {body.get('state')}, restarts {body.get('restarts')})"
    )
    return EXIT_OK


def run_credentials(args: argparse.Namespace) -> int:
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
        return fail(exc)
    before = body.get("upstream_before")
    print(
        f"orderdesk: account {args.account}: new access token loaded"
        + (f" (upstream was {before})" if before else "")
    )
    return EXIT_OK


def run_rotate_token(args: argparse.Namespace) -> int:
    """The new value goes to standard output alone (for a pipe into a secret store)."""
    client = AdminClient.from_args(args)
    path = f"/admin/accounts/{_segment(args.account)}/tokens/{_segment(args.name)}"
    try:
        with client.open() as http:
            body = client.call(http, "PUT", path)
    except (Unreachable, Refused) as exc:
        return fail(exc)
    print(
        f"orderdesk: account {args.account}: token {args.name!r} rotated; "
        f"{body.get('sessions_ended', 0)} browser session(s) ended. Put the new value into "
        "orderdesk.toml too: it lives in memory until the next start.",
        file=sys.stderr,
    )
    print(body.get("token", ""))
    return EXIT_OK


def _segment(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")

