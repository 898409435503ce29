"""The server-side commands of `orderdesk`: `serve`, `venue`, `migrate` and `prune`.

Each takes the parsed arguments and returns an exit status; the heavy imports (trio, the web
front, the store, the paper venue) happen inside, so the operator commands start fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

import attrs

from ._startup import reported_startup_failures, start_listener
from .config_cluster import rebound
from .settings import (
    STANDALONE_VENUE_STATE,
    Settings,
    load_settings,
    var_dir_of,
    venue_state,
)

log = logging.getLogger("orderdesk")


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(getattr(args, "config", None))
    if getattr(args, "bind", None) and args.command == "serve":
        cluster = settings.cluster and rebound(settings.cluster, settings.bind, args.bind)
        settings = attrs.evolve(settings, bind=args.bind, cluster=cluster)
    return settings


def run_serve(args: argparse.Namespace) -> int:
    import trio_asyncio

    from store import exclusive_store
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
    with reported_startup_failures(), exclusive_store(settings.database_url):
        trio_asyncio.run(serve, settings)
    return 0


def run_venue(args: argparse.Namespace) -> int:
    import trio

    from brokers.paper import VenueConfig, serve_venue

    # The venue is the one it serves: ORDERDESK_VENUE_URL (which venue `serve` trades on) is
    # not for it, so its [venue] table applies even where the variable is exported to both.
    environ = {k: v for k, v in os.environ.items() if k != "ORDERDESK_VENUE_URL"}
    settings = load_settings(args.config, environ=environ) if args.config else None
    config = (settings.venue if settings and settings.venue else None) or VenueConfig(
        state_file=str(var_dir_of() / STANDALONE_VENUE_STATE))
    if settings is not None:
        paper = tuple(a.id for a in settings.accounts if a.broker == "paper")
        config = attrs.evolve(config, accounts=paper or config.accounts)
    if args.accounts:
        config = attrs.evolve(config, accounts=tuple(args.accounts.split(",")))
    if args.bind:
        config = attrs.evolve(config, bind=args.bind)
    if args.instruments:
        config = attrs.evolve(config, instruments_csv=args.instruments)
    if args.state:
        config = attrs.evolve(config, state_file=venue_state(args.state, var_dir_of()))

    async def run() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                address = await start_listener(
                    nursery, "paper venue", config.bind, serve_venue, config
                )
                print(f"orderdesk venue: REST {address.rest_url}  ticker {address.ticker_url}",
                      flush=True)
                async for signum in signals:
                    log.info("signal %s: stopping the venue", signal.Signals(signum).name)
                    break
                nursery.cancel_scope.cancel()

    with reported_startup_failures():
        trio.run(run)
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    import trio_asyncio

    from store import migrate

    settings = _settings(args)
    with reported_startup_failures():
        trio_asyncio.run(migrate, settings.database_url)
    print(f"orderdesk: store migrated ({_redact_url(settings.database_url)})")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    """Delete what the store keeps beyond `[retention] days` (or --days), today never."""
    import trio_asyncio

    from store import open_store

    from .retention import prune_now

    settings = _settings(args)
    days = args.days or settings.retention.days

    async def prune() -> dict[str, int]:
        async with open_store(settings.database_url, pool_size=1) as store:
            return attrs.asdict(await prune_now(store, days))

    with reported_startup_failures():
        counts = trio_asyncio.run(prune)
    done = ", ".join(f"{n} {table}" for table, n in counts.items())
    print(f"orderdesk: pruned before the last {days} days ({done}) "
          f"from {_redact_url(settings.database_url)}")
    return 0


def _redact_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
