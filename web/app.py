"""The app factory and the server: `create_app(deps)` and `serve_web(app, bind, task_status=...)`.

There is no module-level app. Everything a handler needs arrives in `WebDeps` (one frozen object,
built once by the service; web/deps.py) and is reachable as `current_deps()`; later features add
a field with a default and, if they have routes, a blueprint passed to
`create_app(..., blueprints=...)`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.config import Sockets
from quart import Blueprint

from ._server import serve_app
from .admin import admin_blueprint
from .auth import Authenticator, TicketBook
from .baskets import baskets_blueprint
from .converter import make_converter
from .cors import install_cors
from .deps import Activity, OrderDeskApp, WebConfig, WebDeps
from .errors import install_error_handler
from .forward import install_forwarding
from .kite_login import kite_login_blueprint
from .middleware import install_log_context, install_request_hooks
from .replies import install_refusal_handler
from .routes import blueprint as http_routes
from .sessions import SessionBook
from .signin import signin_blueprint
from .status import status_blueprint
from .streams import StreamRegistry
from .ws import blueprint as ws_routes

log = logging.getLogger("web")

__all__ = ["bind_web", "create_app", "serve_web"]


def create_app(deps: WebDeps, *, blueprints: Iterable[Blueprint] = ()) -> OrderDeskApp:
    """The app: account and status routes, saved baskets, the order websocket, `/admin/*`,
    plus `blueprints`.

    A blueprint passed in that is already part of the defaults (by name) is not added twice.
    """
    install_log_context()
    app = OrderDeskApp("orderdesk", static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=deps.config.max_body_size,
        BACKGROUND_TASK_SHUTDOWN_TIMEOUT=1,  # we start none; never wait 5 s for nothing
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.deps = deps
    app.auth = deps.auth if deps.auth is not None else Authenticator(deps.settings)
    # [cluster]: the books shared through Redis; else this process's own
    app.tickets = deps.tickets if deps.tickets is not None else TicketBook(
        deps.config.ticket_ttl_s, clock=deps.config.clock, max_tickets=deps.config.max_tickets)
    app.sessions = deps.sessions if deps.sessions is not None else SessionBook(
        deps.settings.session_ttl_s, clock=deps.config.clock,
        max_sessions=deps.config.max_sessions)
    app.streams = StreamRegistry()
    app.activity = Activity()
    app.converter = make_converter()
    deps.metrics.observe(deps.actors, deps.health, deps.cluster_counters)
    install_request_hooks(app)
    install_cors(app)  # before the blueprints: a preflight is answered before the Origin check
    install_error_handler(app)
    install_refusal_handler(app, app.converter)
    for bp in (http_routes, status_blueprint, ws_routes, admin_blueprint, kite_login_blueprint,
               signin_blueprint, baskets_blueprint, *blueprints):
        if bp.name not in app.blueprints:
            app.register_blueprint(bp)
    install_forwarding(app)  # [cluster]: after the Origin check, before any handler
    return app


def hypercorn_config(bind: str, config: WebConfig) -> HyperConfig:
    hc = HyperConfig()
    hc.bind = [bind]
    hc.accesslog = None  # our middleware logs requests, with secrets redacted
    hc.errorlog = logging.getLogger("hypercorn.error")
    hc.websocket_max_message_size = config.max_message_size
    hc.websocket_ping_interval = config.ping_interval_s
    hc.read_timeout = config.read_timeout_s  # type: ignore[assignment]
    hc.graceful_timeout = config.graceful_timeout_s
    return hc


def bind_web(bind: str, config: WebConfig) -> Sockets:
    """Bind and listen on `bind` once: the web child's restarts serve on the same sockets."""
    hc = hypercorn_config(bind, config)
    sockets = hc.create_sockets()
    for sock in sockets.insecure_sockets:
        sock.listen(hc.backlog)
    return sockets


async def serve_web(
    app: OrderDeskApp,
    bind: str | Sockets,
    *,
    shutdown_trigger: Callable[[], Awaitable[object]] | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until `shutdown_trigger` returns (then shut down gracefully) or until cancelled.

    `bind` is an address to bind (closed again on return) or sockets from `bind_web` (left
    open: the caller owns them, so a restart keeps the port).
    `task_status.started("host:port")` reports the bound address (the real port for port 0).
    When the trigger fires: no new connections, every websocket is closed with 1001, requests
    in flight get up to `graceful_timeout_s` to finish, and then serving stops at once (without
    waiting out hypercorn's per-connection ping timers, which would cost up to a ping interval).
    """
    config = app.deps.config
    owned = isinstance(bind, str)
    sockets = bind_web(bind, config) if isinstance(bind, str) else bind
    triggered = trio.Event()

    async def trigger() -> None:
        if shutdown_trigger is None:
            await trio.sleep_forever()
        else:
            await shutdown_trigger()
        app.close_streams("shutdown")
        triggered.set()

    try:
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(partial(
                serve_app, app, hypercorn_config("", config), sockets,
                send_timeout_s=config.send_timeout_s, shutdown_trigger=trigger,
            ))
            address = binds[0].split("://", 1)[-1]
            log.info("web front listening on %s", address)
            task_status.started(address)
            await triggered.wait()
            with trio.move_on_after(config.graceful_timeout_s):
                await app.activity.wait_idle()
            nursery.cancel_scope.cancel()
    finally:
        if owned:
            for sock in sockets.insecure_sockets:
                sock.close()
