"""The root of the supervision tree: everything `orderdesk serve` runs, in one nursery.

root
├── store      opened here, closed last (it flushes)
├── venue      the embedded paper venue, when [venue] is configured
├── accounts   a dynamic supervisor: one AccountActor per account
└── web        hypercorn serving the Quart-Trio app
"""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import attrs
import trio

from actors.account import AccountActor, ActorConfig
from brokers.kite import KiteBroker, KiteSettings
from brokers.paper import VenueAddress, serve_venue
from store import Store, open_store
from web import Metrics, WebDeps, create_app, serve_web

from .health import HealthRegistry
from .settings import AccountSettings, Settings
from .supervisor import ChildSpec, DynamicSupervisor, open_dynamic_supervisor

log = logging.getLogger("orderdesk")


@attrs.frozen
class Running:
    """What a started service exposes to its caller (the CLI prints it, tests use it)."""

    web_bind: str
    venue: VenueAddress | None
    actors: dict[str, AccountActor]
    store: Store
    health: HealthRegistry
    accounts: DynamicSupervisor
    shutdown: trio.Event


async def serve(settings: Settings, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the service until SIGINT/SIGTERM (or cancellation), shutting down gracefully."""
    async with open_service(settings) as running:
        log.info("orderdesk serving on http://%s", running.web_bind)
        print(f"orderdesk: serving on http://{running.web_bind}", flush=True)
        task_status.started(running)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("signal %s: shutting down", signal.Signals(signum).name)
                running.shutdown.set()
                break


@asynccontextmanager
async def open_service(
    settings: Settings, *, actor_config: ActorConfig = ActorConfig()
) -> AsyncIterator[Running]:
    """Start the whole tree; leaving the block shuts it down in order."""
    health = HealthRegistry()
    shutdown = trio.Event()
    async with open_store(settings.database_url) as store, trio.open_nursery() as root:
        health.register("store", "service").set_state("running")
        venue = None
        if settings.venue is not None:
            venue = await root.start(serve_venue, settings.venue)
            health.register("venue", "service").set_state("running")
        actors: dict[str, AccountActor] = {}
        brokers: list[KiteBroker] = []
        try:
            async with open_dynamic_supervisor(health) as accounts:
                for account in settings.accounts:
                    broker = KiteBroker(_kite_settings(account, venue))
                    brokers.append(broker)
                    name = f"account:{account.id}"
                    actor = AccountActor(
                        account.id, broker, store, actor_config,
                        health=health.register(name, "actor"),
                    )
                    actors[account.id] = actor
                    await accounts.start_child(ChildSpec(name, actor.run, kind="actor"))
                metrics = Metrics()
                app = create_app(WebDeps(settings, actors, store, health, metrics))
                web_bind = await root.start(
                    partial(serve_web, app, settings.bind, shutdown_trigger=shutdown.wait)
                )
                health.register("web", "service").set_state("running")
                yield Running(web_bind, venue, actors, store, health, accounts, shutdown)
                shutdown.set()
                for actor in actors.values():
                    actor.close_subscribers("shutdown")
                root.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for broker in brokers:
                    await broker.aclose()


def _kite_settings(account: AccountSettings, venue: VenueAddress | None) -> KiteSettings:
    rest_url = account.rest_url or (venue.rest_url if venue else None)
    ticker_url = account.ticker_url or (venue.ticker_url if venue else None)
    if rest_url is None or ticker_url is None:
        raise RuntimeError(f"account {account.id}: no rest_url/ticker_url and no venue")
    return KiteSettings(
        api_key=account.api_key,
        access_token=account.access_token,
        rest_url=rest_url,
        ticker_url=ticker_url,
    )
