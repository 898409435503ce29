"""The app factory and the server: `create_app(deps)` and `serve_web(app, bind, task_status=...)`.

There is no module-level app. Everything a handler needs arrives in `WebDeps` (one frozen object,
built once by the service) and is reachable as `current_deps()`; later features add a field with
a default and, if they have routes, a blueprint passed to `create_app(..., blueprints=...)`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, cast

import attrs
import cattrs
import trio
from hypercorn.config import Config as HyperConfig
from hypercorn.config import Sockets
from quart import Blueprint, current_app
from quart_trio import QuartTrio

from actors.account import AccountActor
from supervision.health import HealthRegistry
from web.settings import Settings

from ._lean import LeanWebsocket, LeanWebsocketConnection
from ._server import serve_app
from .auth import Authenticator, TicketBook
from .converter import make_converter
from .cors import install_cors
from .errors import install_error_handler
from .inputs import StrictJsonRequest
from .metrics import Metrics
from .middleware import install_log_context, install_request_hooks
from .replies import install_refusal_handler
from .sessions import SessionBook
from .ws import StreamRegistry

log = logging.getLogger("web")

__all__ = [
    "OrderDeskApp", "WebConfig", "WebDeps", "bind_web", "create_app", "current_deps", "serve_web",
]


@attrs.frozen
class WebConfig:
    """Tunables of the web front; the defaults are the production values."""

    max_message_size: int = 64 * 1024  # websocket frames from clients; larger closes 1009
    max_body_size: int = 1024 * 1024  # HTTP request bodies; larger is 413
    ping_interval_s: float | None = 20.0  # protocol pings to every websocket peer
    read_timeout_s: float | None = 60.0  # a peer silent this long (no pong either) is dropped
    graceful_timeout_s: float = 3.0  # how long connections may take to finish at shutdown
    ticket_ttl_s: float = 30.0
    max_sessions: int = 10_000  # browser sessions (the session cookie); the oldest goes first
    clock: Callable[[], float] = time.monotonic  # ticket and session expiry; tests inject theirs
    max_frame_messages: int = 256  # a lagging subscriber gets at most this many per frame
    max_frame_bytes: int = 256 * 1024
    websocket_compression: bool = False  # permessage-deflate for order streams (costs CPU)
    direct_writes: bool = True  # the fan-out writes pre-built frames to idle sockets (_frames.py)
    send_timeout_s: float = 10.0  # a peer that takes longer to take one write is dropped
    request_timeout_s: float = 30.0  # a request's head and body must arrive within this


@attrs.frozen
class WebDeps:
    """What the web front talks to. Add later dependencies as fields with defaults."""

    settings: Settings
    actors: Mapping[str, AccountActor]
    store: Any  # store.Store (a Protocol)
    health: HealthRegistry
    metrics: Metrics = attrs.field(factory=Metrics)
    config: WebConfig = WebConfig()
    batches: Any = None  # the BatchCoordinator, when the batch routes are wired
    supervisor: Any = None  # the accounts DynamicSupervisor, for POST /admin/accounts/*/restart


class Activity:
    """How many HTTP requests and websockets the app is handling; wait for none."""

    def __init__(self) -> None:
        self.active = 0
        self._idle = trio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.active += 1
        if self._idle.is_set():
            self._idle = trio.Event()

    def exit(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        while self.active:
            await self._idle.wait()


class OrderDeskApp(QuartTrio):
    """A QuartTrio app that carries its dependencies and the state the web front owns."""

    request_class = StrictJsonRequest
    websocket_class = LeanWebsocket
    asgi_websocket_class = LeanWebsocketConnection
    deps: WebDeps
    auth: Authenticator
    tickets: TicketBook
    sessions: SessionBook
    streams: StreamRegistry
    activity: Activity
    converter: cattrs.Converter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        self.activity.enter()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.activity.exit()

    def close_streams(self, reason: str = "shutdown") -> None:
        """Close every websocket subscriber (1001 for "shutdown") and refuse new ones."""
        self.streams.close_all(reason)


def current_deps() -> WebDeps:
    return cast(OrderDeskApp, current_app).deps


def current_web() -> OrderDeskApp:
    return cast(OrderDeskApp, current_app._get_current_object())  # type: ignore[attr-defined]


def create_app(deps: WebDeps, *, blueprints: Iterable[Blueprint] = ()) -> OrderDeskApp:
    """The app: account and status routes, the order websocket, `/admin/*`, plus `blueprints`.

    A blueprint passed in that is already part of the defaults (by name) is not added twice.
    """
    from .admin import admin_blueprint
    from .kite_login import kite_login_blueprint
    from .routes import blueprint as http_routes
    from .signin import signin_blueprint
    from .status import status_blueprint
    from .ws import blueprint as ws_routes

    install_log_context()
    app = OrderDeskApp("orderdesk", static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=deps.config.max_body_size,
        BACKGROUND_TASK_SHUTDOWN_TIMEOUT=1,  # we start none; never wait 5 s for nothing
        PROVIDE_AUTOMATIC_OPTIONS=False,
    )
    app.deps = deps
    app.auth = Authenticator(deps.settings)
    app.tickets = TicketBook(deps.config.ticket_ttl_s, clock=deps.config.clock)
    app.sessions = SessionBook(deps.settings.session_ttl_s, clock=deps.config.clock,
                               max_sessions=deps.config.max_sessions)
    app.streams = StreamRegistry()
    app.activity = Activity()
    app.converter = make_converter()
    deps.metrics.observe(deps.actors, deps.health)
    install_request_hooks(app)
    install_cors(app)  # before the blueprints: a preflight is answered before the Origin check
    install_error_handler(app)
    install_refusal_handler(app, app.converter)
    for bp in (http_routes, status_blueprint, ws_routes, admin_blueprint, kite_login_blueprint,
               signin_blueprint, *blueprints):
        if bp.name not in app.blueprints:
            app.register_blueprint(bp)
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
