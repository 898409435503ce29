"""The root of the supervision tree: everything `orderdesk serve` runs, in one nursery.

root
├── store      opened first, closed last (it flushes)
├── venue      the embedded paper venue, when [venue] is configured
├── accounts   a dynamic supervisor: one AccountActor per account
├── batches    the BatchCoordinator (recovers unfinished batches at start)
├── webhooks   the outbox dispatcher, and the relay that feeds it
└── web        hypercorn serving the Quart-Trio app

Shutdown (SIGINT/SIGTERM, or leaving `open_service`): stop accepting and close websockets with
1001, give running batches `grace_s` to finish or roll back, cancel the rest, close the store.
"""

from __future__ import annotations

import gc
import logging
import signal
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

from actors.account import AccountActor, ActorConfig
from actors.batch import BatchConfig, BatchCoordinator
from actors.events import EventRelay
from actors.webhooks import WebhookConfig, WebhookDispatcher
from brokers.kite import KiteBroker, KiteSettings
from brokers.paper import VenueAddress, serve_venue
from store import Store, open_store
from web import Metrics, WebDeps, create_app, serve_web
from web.orders import orders_blueprint
from web.page import page_blueprint

from .health import HealthRegistry
from .settings import AccountSettings, Settings
from .supervisor import ChildSpec, DynamicSupervisor, open_dynamic_supervisor, supervise

log = logging.getLogger("orderdesk")

SHUTDOWN_GRACE_S = 10.0


@attrs.frozen
class Running:
    """What a started service exposes to its caller (the CLI prints it, tests use it)."""

    web_bind: str
    venue: VenueAddress | None
    actors: dict[str, AccountActor]
    store: Store
    health: HealthRegistry
    accounts: DynamicSupervisor
    batches: BatchCoordinator
    webhooks: WebhookDispatcher
    metrics: Metrics
    shutdown: trio.Event


async def serve(settings: Settings, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the service until SIGINT/SIGTERM; a second signal exits at once."""
    async with open_service(settings) as running:
        gc.freeze()  # start-up objects leave the collector's scans: no 50 ms pauses in fan-out
        log.info("orderdesk serving on http://%s", running.web_bind)
        print(f"orderdesk: serving on http://{running.web_bind}", flush=True)
        task_status.started(running)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("signal %s: shutting down", signal.Signals(signum).name)
                break
        # Leaving the receiver restores the default handlers: a second signal ends at once.


@asynccontextmanager
async def open_service(
    settings: Settings,
    *,
    actor_config: ActorConfig = ActorConfig(),
    batch_config: BatchConfig | None = None,
    webhook_config: WebhookConfig = WebhookConfig(),
    grace_s: float = SHUTDOWN_GRACE_S,
) -> AsyncIterator[Running]:
    """Start the whole tree; leaving the block shuts it down in order."""
    health = HealthRegistry()
    metrics = Metrics()
    shutdown = trio.Event()
    brokers: list[KiteBroker] = []
    async with open_store(settings.database_url) as store, trio.open_nursery() as root:
        try:
            health.register("store", "service").set_state("running")
            venue = None
            if settings.venue is not None:
                venue = await root.start(serve_venue, settings.venue)
                health.register("venue", "service").set_state("running")
            dispatcher = WebhookDispatcher(
                store,
                {a.id: a.webhooks for a in settings.accounts},
                webhook_config,
                on_result=lambda result: metrics.webhook_deliveries.labels(result).inc(),
            )
            relay = EventRelay(dispatcher)
            await root.start(supervise, ChildSpec("webhooks", dispatcher.run), health)
            await root.start(supervise, ChildSpec("events", relay.run), health)

            def on_update(account: str, seq: int, payload: dict[str, Any]) -> None:
                metrics.on_update(account, seq, payload)
                relay.order_updated(account, seq, payload)

            actors: dict[str, AccountActor] = {}
            tls = ssl.create_default_context()
            async with open_dynamic_supervisor(health) as accounts:
                for account in settings.accounts:
                    broker = KiteBroker(_kite_settings(account, venue), ssl_context=tls)
                    brokers.append(broker)
                    name = f"account:{account.id}"
                    actor = AccountActor(
                        account.id, broker, store, actor_config,
                        health=health.register(name, "actor"), on_update=on_update,
                    )
                    actors[account.id] = actor
                    await accounts.start_child(ChildSpec(name, actor.run, kind="actor"))
                metrics.observe(actors, health)

                def on_batch(event: str, result: dict[str, Any]) -> None:
                    metrics.batch_orders.labels(event.removeprefix("batch.")).inc()
                    metrics.batch_duration.observe(float(result.get("duration_ms", 0)) / 1000)
                    relay.batch_finished(event, result)

                coordinator = BatchCoordinator(
                    store, actors, batch_config or _batch_config(settings), on_event=on_batch
                )
                await root.start(supervise, ChildSpec("batches", coordinator.run), health)
                deps = WebDeps(
                    settings, actors, store, health, metrics,
                    batches=coordinator, supervisor=accounts,
                )
                app = create_app(deps, blueprints=[orders_blueprint, page_blueprint])
                web_done = trio.Event()
                web_bind = await root.start(
                    partial(_serve_web, app, settings.bind, shutdown, web_done)
                )
                health.register("web", "service").set_state("running")
                yield Running(
                    web_bind, venue, actors, store, health, accounts, coordinator, dispatcher,
                    metrics, shutdown,
                )
                shutdown.set()  # hypercorn stops accepting; websockets get 1001
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(deps.config.graceful_timeout_s + 1):
                        await web_done.wait()
                    for actor in actors.values():
                        actor.close_subscribers("shutdown")
                    left = await coordinator.drain(grace_s)
                if left:
                    log.warning("%d batches still running after %.1f s: cancelling", left, grace_s)
                root.cancel_scope.cancel()
        finally:
            root.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                for broker in brokers:
                    await broker.aclose()


async def _serve_web(
    app: Any, bind: str, shutdown: trio.Event, done: trio.Event, *, task_status: Any
) -> None:
    try:
        await serve_web(app, bind, shutdown_trigger=shutdown.wait, task_status=task_status)
    finally:
        done.set()


def _batch_config(settings: Settings) -> BatchConfig:
    """Paper accounts follow the venue's own hours; real ones NSE's session."""
    if all(a.broker == "paper" for a in settings.accounts):
        return BatchConfig(session=None)
    return BatchConfig()


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
