"""The `orderdesk` command: serve the gateway, run a standalone paper venue, migrate the store."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import attrs
import trio
import trio_asyncio

from brokers.paper import VenueConfig, serve_venue

from .settings import DEFAULT_VENUE_BIND, ConfigError, Settings, load_settings

log = logging.getLogger("orderdesk")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    try:
        return int(args.run(args) or 0)
    except ConfigError as exc:
        print(f"orderdesk: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderdesk",
        description="Order gateway for F&O traders (Kite Connect v3). "
        "Configuration: --config PATH or ORDERDESK_CONFIG; with none, embedded defaults.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the gateway (web front, account actors, store, embedded paper venue)",
        description="Run the gateway until SIGINT/SIGTERM.",
    )
    serve.add_argument("--config", help="orderdesk.toml (default: ORDERDESK_CONFIG or none)")
    serve.add_argument("--bind", help="HOST:PORT for the web front (default from config)")
    serve.set_defaults(run=_serve)

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
    venue.set_defaults(run=_venue)

    migrate = commands.add_parser(
        "migrate",
        help="apply store migrations and exit",
        description="Apply the store's schema migrations to DATABASE_URL / [database].url.",
    )
    migrate.add_argument("--config", help="orderdesk.toml")
    migrate.set_defaults(run=_migrate)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    if getattr(args, "bind", None) and args.command == "serve":
        settings = attrs.evolve(settings, bind=args.bind)
    return settings


def _serve(args: argparse.Namespace) -> int:
    from .service import serve

    settings = _settings(args)
    if settings.generated_secrets.get("_new"):
        print(
            "orderdesk: generated tokens (kept in var/secrets.json):\n"
            f"  account 'primary' token: {settings.generated_secrets['primary_token']}\n"
            f"  admin token:             {settings.generated_secrets['admin_token']}",
            flush=True,
        )
    trio_asyncio.run(serve, settings)
    return 0


def _venue(args: argparse.Namespace) -> int:
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
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve_venue, config)
            print(f"orderdesk venue: REST {address.rest_url}  ticker {address.ticker_url}",
                  flush=True)

    trio.run(run)
    return 0


def _migrate(args: argparse.Namespace) -> int:
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


if __name__ == "__main__":
    raise SystemExit(main())
