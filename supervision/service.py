"""The root of the supervision tree: everything `orderdesk serve` runs, in one nursery.

root
├── store      opened first, closed last (it flushes); `store-monitor` polls its health
├── venue      the embedded paper venue, when [venue] is configured
├── ticker-reader  one task reading every account's ticker socket (`brokers.ticker_reader`)
├── accounts   a dynamic supervisor: one AccountActor per account
├── batches    the BatchCoordinator (recovers unfinished batches at start)
├── webhooks   the outbox dispatcher, and the relay that feeds it
├── web        hypercorn serving the Quart-Trio app
└── metrics    `GET /metrics` alone on [server] metrics_bind, when configured

Shutdown (SIGINT/SIGTERM, or leaving `open_service`): stop accepting and close websockets with
1001; give running batches `grace_s` to finish or roll back (while requests in flight wind
down); the grace is binding: then the batches still running are cut short, legs and rollbacks
alike (a place/cancel call in flight finishes within its own timeout and is stored), while the
actors and the store still run, and each stays stored unfinished for recovery at the next start;
then cancel the rest and close the brokers and the store.
A second signal ends the process at once; what it cuts short is recovered at the next start.
"""

from __future__ import annotations

import gc
import logging
import math
import signal
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

from actors.account import AccountActor, ActorConfig
from actors.connect_pacer import ConnectPacer
from actors.health import ErrorInfo, HealthEntry, HealthRegistry
from actors.instruments import InstrumentCaches
from actors.orders import BatchConfig, BatchCoordinator
from actors.ratelimit import RateLimiter
from actors.settings import AccountSettings, TickerSettings
from actors.webhooks import EventRelay, WebhookConfig, WebhookDispatcher
from brokers.kite import KiteBroker, KiteSettings
from brokers.paper import VenueAddress, serve_venue
from brokers.ticker_reader import TickerReader, shared_reading
from store import Store, open_store
from web import Metrics, OrderDeskApp, WebConfig, WebDeps, create_app
from web.chain import chain_blueprint
from web.contract import contract_blueprint
from web.front import WebFront
from web.metrics_server import serve_metrics
from web.orders import orders_blueprint
from web.page import page_blueprint
from web.settings import DEFAULT_SHUTDOWN_GRACE_S, Settings

from ._startup import listen_errors, start_listener
from .cluster import BookLimits, Cluster, open_cluster
from .open_files import raise_open_files
from .retention import prune_daily
from .rotations import open_authenticator
from .supervisor import (
    ChildSpec,
    DynamicSupervisor,
    RestartPolicy,
    open_dynamic_supervisor,
    supervise,
)

log = logging.getLogger("orderdesk")

SHUTDOWN_GRACE_S = DEFAULT_SHUTDOWN_GRACE_S
#: How often `store-monitor` asks the store for its health (each check is bounded by the
#: store's own HEALTH_TIMEOUT_S), so an outage shows in the tree within seconds.
STORE_CHECK_S = 5.0
#: The web front's restarts: quick at first, and it keeps trying (clients are waiting for it).
WEB_POLICY = RestartPolicy(initial_delay=0.05, max_delay=5.0, max_restarts=30, period=60.0)
_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    web: WebFront
    app: OrderDeskApp  # the web front (its url_map lists every route)
    metrics_bind: str | None = None  # the listener of [server] metrics_bind, when configured
    cluster: Cluster | None = None  # [cluster]: this node's owners


async def serve(settings: Settings, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the service until SIGINT/SIGTERM, then shut down gracefully.

    Running batches get `settings.shutdown_grace_s` ([server] shutdown_grace_s). A second
    signal ends the process at once."""
    previous: dict[int, Any] = {}
    files = raise_open_files(len(settings.accounts), embedded_venue=settings.venue is not None)
    try:
        async with open_service(settings, grace_s=settings.shutdown_grace_s) as running:
            gc.freeze()  # start-up objects leave the collector's scans: no 50 ms pauses in fan-out
            log.info("orderdesk serving on http://%s", running.web_bind)
            log.info("%s", files.describe())
            print(f"orderdesk: serving on http://{running.web_bind}", flush=True)
            task_status.started(running)
            with trio.open_signal_receiver(*_SHUTDOWN_SIGNALS) as signals:
                signum = await anext(signals)
            # The OS default from here on: a second signal ends the process at once, whatever
            # the shutdown waits for (a shielded rollback, a stuck store). A batch cut short
            # that way stays stored unfinished and is resumed by recovery at the next start.
            previous = {s: signal.signal(s, signal.SIG_DFL) for s in _SHUTDOWN_SIGNALS}
            log.info("signal %s: shutting down (batches get %.1f s; a second signal exits at once)",
                     signal.Signals(signum).name, settings.shutdown_grace_s)
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)


@asynccontextmanager
async def open_service(
    settings: Settings,
    *,
    actor_config: ActorConfig | None = None,
    batch_config: BatchConfig | None = None,
    webhook_config: WebhookConfig = WebhookConfig(),
    grace_s: float | None = None,
    actor_policy: RestartPolicy = RestartPolicy(),
    store_check_s: float = STORE_CHECK_S,
    web_config: WebConfig | None = None,
) -> AsyncIterator[Running]:
    """Start the whole tree; leaving the block shuts it down in order.

    `grace_s` (default `settings.shutdown_grace_s`) is what running batches get to finish or
    roll back at shutdown; `actor_policy` is each account actor's restart policy;
    `store_check_s` how often `store-monitor` checks the store; `web_config` the web front's
    tunables (default: from `settings`).
    """
    grace_s = settings.shutdown_grace_s if grace_s is None else grace_s
    brokers: list[KiteBroker] = []
    async with open_store(settings.database_url, pool_size=settings.pool_size) as store:
        try:
            async with trio.open_nursery() as root:
                try:
                    async with _open_tree(
                        root, settings, store, brokers, actor_config or _actor_config(settings),
                        batch_config,
                        webhook_config, actor_policy, store_check_s,
                        web_config or _web_config(settings, grace_s),
                    ) as (running, stop):
                        yield running
                        await stop(grace_s)
                finally:
                    root.cancel_scope.cancel()
        finally:
            # Only once the tree is down: batches concluding at shutdown still use them.
            with trio.CancelScope(shield=True):
                for broker in brokers:
                    await broker.aclose()


@asynccontextmanager
async def _open_tree(
    root: trio.Nursery,
    settings: Settings,
    store: Store,
    brokers: list[KiteBroker],
    actor_config: ActorConfig,
    batch_config: BatchConfig | None,
    webhook_config: WebhookConfig,
    actor_policy: RestartPolicy,
    store_check_s: float,
    web_config: WebConfig,
) -> AsyncIterator[tuple[Running, Callable[[float], Awaitable[None]]]]:
    """Start every child into `root`; yields the `Running` view and the graceful `stop`."""
    health = HealthRegistry()
    metrics = Metrics()
    shutdown = trio.Event()
    store_entry = health.register("store", "service")
    store_entry.set_state("running")
    await root.start(supervise, ChildSpec(
        "store-monitor", partial(_monitor_store, store, store_entry, store_check_s)
    ), health)
    await root.start(prune_daily, store, settings.retention)  # logs its failures, never raises
    venue = None
    if settings.venue is not None:
        venue = await start_listener(
            root, "paper venue", settings.venue.bind, serve_venue, settings.venue
        )
        health.register("venue", "service").set_state("running")
    dispatcher = WebhookDispatcher(
        store,
        {a.id: a.webhooks for a in settings.accounts},
        webhook_config,
        on_result=lambda result: metrics.webhook_deliveries.labels(result).inc(),
    )
    actors: dict[str, AccountActor] = {}
    relay = EventRelay(dispatcher, store,
                       seq_of=lambda account: actors[account].seq if account in actors else 0)
    await root.start(supervise, ChildSpec("webhooks", dispatcher.run), health)
    await root.start(supervise, ChildSpec("events", relay.run), health)

    def on_update(account: str, seq: int, payload: dict[str, Any]) -> None:
        metrics.on_update(account, seq, payload)
        relay.order_updated(account, seq, payload)

    tls = ssl.create_default_context()
    pacer = ConnectPacer(*settings.ticker.connect_pace())  # every account's connects, any time
    gather = settings.ticker.read_gather_s  # every ticker socket read by one task:
    reader = TickerReader(*([] if gather is None else [gather])) if shared_reading() else None
    if reader is not None:  # a heartbeat wakes no account
        await root.start(supervise, ChildSpec("ticker-reader", reader.run), health)
    auth = await open_authenticator(settings, store)  # with the rotations the store keeps
    async with (
        open_cluster(settings.cluster, store,  # None without [cluster]
                     (batch_config or BatchConfig()).place_timeout_s,
                     BookLimits(web_config.ticket_ttl_s, settings.session_ttl_s,
                                web_config.max_tickets, web_config.max_sessions), auth,
                     actor_config) as cluster,
        open_dynamic_supervisor(health) as accounts,
    ):
        for account in settings.accounts:
            reads = settings.limits.reads_per_s
            broker = KiteBroker(_kite_settings(account, venue, settings.ticker), ssl_context=tls,
                                before_read=RateLimiter(reads).acquire if reads else None,
                                reader=reader)
            brokers.append(broker)
            name = f"account:{account.id}"
            entry = health.register(name, "actor")
            actor = AccountActor(
                account.id, broker, store, actor_config, health=entry, on_update=on_update,
                pacer=pacer,
            )
            actors[account.id] = actor
            # [cluster]: the actor runs only while this node owns the account
            run = actor.run if cluster is None else cluster.owner(actor, entry).run
            await accounts.start_child(ChildSpec(name, run, policy=actor_policy, kind="actor"))

        def on_batch(event: str, result: dict[str, Any]) -> None:
            metrics.batch_orders.labels(event.removeprefix("batch.")).inc()
            metrics.batch_duration.observe(float(result.get("duration_ms", 0)) / 1000)
            relay.batch_finished(event, result)

        batch_config = batch_config or _batch_config(settings)
        # One master per broker URL, for the order path's validation and the page alike.
        instruments = InstrumentCaches(batch_config.freeze_limits, batch_config.instrument_refresh)
        coordinator = BatchCoordinator(
            store, actors, batch_config, on_event=on_batch,
            on_store_write=metrics.store_write_duration.observe,
            on_refused=lambda reason: metrics.batches_refused.labels(reason).inc(),
            instruments=instruments,
            owns=None if cluster is None else cluster.owns,
            fence=None if cluster is None else cluster.fence, on_late=metrics.late_order)
        if cluster is not None:  # a takeover recovers the old owner's unfinished batches
            cluster.takeovers = coordinator
        batches = _Scoped()
        await root.start(batches.run, partial(supervise, ChildSpec("batches", coordinator.run),
                                              health))
        deps = WebDeps(
            settings, actors, store, health, metrics, web_config, batches=coordinator,
            supervisor=accounts, instruments=instruments, auth=auth,
            **({} if cluster is None else cluster.web_deps()),
        )
        app = create_app(deps, blueprints=[orders_blueprint, page_blueprint, contract_blueprint,
                                   chain_blueprint])
        with listen_errors("web", settings.bind):
            front = WebFront.bind(app, settings.bind, shutdown)
        web = _Scoped()
        try:
            # Restarted on failure (same sockets) while everything else keeps running; a
            # normal return (shutdown) ends it.
            await root.start(web.run, partial(supervise, ChildSpec(
                "web", front.run, restart="transient", policy=WEB_POLICY,
            ), health))
        except BaseException:
            front.close()
            raise
        metrics_bind = None
        if settings.metrics_bind is not None:
            metrics_bind = await start_listener(
                root, "metrics", settings.metrics_bind, serve_metrics, metrics,
                settings.metrics_bind,
            )
            health.register("metrics", "service").set_state("running")

        async def stop(grace_s: float) -> None:
            """Stop accepting, close websockets (1001), give batches `grace_s`, then cut them
            short (`drain` aborts their rollbacks) while actors and store still run."""
            health.begin_draining()  # /ready says 503 to whoever still asks
            shutdown.set()
            with trio.CancelScope(shield=True):
                for actor in actors.values():
                    actor.close_subscribers("shutdown")
                async with trio.open_nursery() as closing:
                    # Requests in flight wind down meanwhile (a batch's POST gets its answer).
                    closing.start_soon(web.wait, deps.config.graceful_timeout_s + 1)
                    left = await coordinator.drain(grace_s)
                    if left:
                        log.warning("%d batches still running after %.1f s: cut short, "
                                    "stored unfinished for recovery at the next start",
                                    left, grace_s)
                        batches.scope.cancel()
                        await batches.wait()

        try:
            yield Running(
                front.address, venue, actors, store, health, accounts, coordinator, dispatcher,
                metrics, shutdown, front, app, metrics_bind, cluster,
            ), stop
        finally:
            front.close()


@attrs.define(eq=False)
class _Scoped:
    """Runs one child of the root under a cancel scope of its own, so shutdown can stop it
    (and wait for it) before the rest of the tree."""

    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    done: trio.Event = attrs.field(factory=trio.Event)

    async def run(self, start: Callable[..., Awaitable[Any]], *, task_status: Any) -> None:
        try:
            with self.scope:
                await start(task_status=task_status)
        finally:
            self.done.set()

    async def wait(self, timeout_s: float = math.inf) -> None:
        with trio.move_on_after(timeout_s):
            await self.done.wait()


async def _monitor_store(
    store: Store, entry: HealthEntry, interval_s: float, *, task_status: Any
) -> None:
    """Keep the `store` health entry in step with `store.health()`: failed while it does not
    answer (or answers not ok), running again once it does."""
    task_status.started()
    while True:
        try:
            report = await store.health()
        except Exception as exc:  # health() reports rather than raises; be sure of it
            report = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        depths = {k: v for k, v in report.items() if k.startswith("pending_")}
        entry.queue_depths = {k: int(v) for k, v in depths.items() if isinstance(v, int)}
        if report.get("ok"):
            if entry.state != "running":
                log.warning("store answers again")
                entry.set_state("running")
            else:
                entry.touch()
        elif entry.state != "failed":
            error = str(report.get("error") or "not ok")
            log.error("store unavailable: %s", error)
            entry.last_error = ErrorInfo("StoreUnavailable", error, trio.current_time())
            entry.set_state("failed")
        await trio.sleep(interval_s)


def _web_config(settings: Settings, grace_s: float) -> WebConfig:
    """Requests in flight at shutdown get as long as the batches they wait for (a batch that
    finishes within its grace is answered), and at least hypercorn's usual 3 s."""
    return WebConfig(send_timeout_s=settings.send_timeout_s,
                     graceful_timeout_s=max(3.0, grace_s + 1))


def _batch_config(settings: Settings) -> BatchConfig:
    """`[limits]` as the order budget. A [calendar] table applies to every account; without
    one, paper accounts follow the venue's own hours and real ones each exchange's default
    session."""
    limits = settings.limits
    config = BatchConfig(
        store_timeout_s=settings.store_timeout_s, rate_per_s=limits.orders_per_s,
        rate_per_minute=limits.orders_per_minute, rate_per_day=limits.orders_per_day,
        rate_reserve=limits.reserve, instrument_refresh=settings.instrument_refresh,
        unhedged_parallel=settings.unhedged_parallel, late_watch_s=settings.late_watch_s)
    if settings.calendar is not None:
        return attrs.evolve(config, session=settings.calendar)
    if all(a.broker == "paper" for a in settings.accounts):
        return attrs.evolve(config, session=None)
    return config


def _actor_config(settings: Settings) -> ActorConfig:
    """`[ticker]`'s reconnect backoff and reconcile period; the rest of ActorConfig's defaults."""
    given = settings.ticker.given()
    for key in ("stall_timeout_s", "connect_rate_per_s", "connects_in_flight", "read_gather_s"):
        given.pop(key, None)  # the adapter's (`_kite_settings`), the pacer's and the reader's
    retention = settings.retention
    return attrs.evolve(ActorConfig(), positions_max_rate_hz=settings.positions_max_rate_hz,
                        snapshot_finished=retention.snapshot_finished_orders,
                        book_finished=retention.book_finished_orders, **given)


def _kite_settings(
    account: AccountSettings, venue: VenueAddress | None, ticker: TickerSettings
) -> KiteSettings:
    rest_url = account.rest_url or (venue.rest_url if venue else None)
    ticker_url = account.ticker_url or (venue.ticker_url if venue else None)
    if rest_url is None or ticker_url is None:
        raise RuntimeError(f"account {account.id}: no rest_url/ticker_url and no venue")
    login_url = account.login_url or (
        f"{rest_url}/connect/login" if account.broker == "paper" else None)
    settings = KiteSettings(api_key=account.api_key, access_token=account.access_token,
                            rest_url=rest_url, ticker_url=ticker_url,
                            **({"login_url": login_url} if login_url else {}))
    if ticker.stall_timeout_s is None:
        return settings
    return attrs.evolve(settings, stall_timeout_s=ticker.stall_timeout_s)
