"""What every handler reaches: `WebDeps` (built once by the service), `WebConfig`, the
`OrderDeskApp` that carries them with the state the web front owns, and `current_deps()`.

Kept apart from the app factory (app.py), which imports every blueprint: the blueprints import
this module, never the factory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, cast

import attrs
import cattrs
import trio
from quart import current_app
from quart_trio import QuartTrio

from actors.account import AccountActor, Subscription
from actors.health import HealthRegistry
from actors.instruments import InstrumentCaches
from web.settings import Settings

from ._lean import LeanWebsocket, LeanWebsocketConnection
from .auth import Authenticator, Tickets
from .inputs import StrictJsonRequest
from .internal import internal_scope
from .metrics import Metrics
from .sessions import Sessions
from .streams import StreamRegistry


class RemoteFeeds(Protocol):
    """[cluster]: where a subscriber of an account another node owns is fed from."""

    def local(self, account: str) -> bool: ...
    async def subscribe(self, account: str, since: int | None) -> Subscription: ...
    def unsubscribe(self, sub: Subscription) -> None: ...


@attrs.frozen
class WebConfig:
    """Tunables of the web front; the defaults are the production values."""

    max_message_size: int = 64 * 1024  # websocket frames from clients; larger closes 1009
    max_body_size: int = 1024 * 1024  # HTTP request bodies; larger is 413
    ping_interval_s: float | None = 20.0  # protocol pings to every websocket peer
    read_timeout_s: float | None = 60.0  # a peer silent this long (no pong either) is dropped
    graceful_timeout_s: float = 3.0  # how long connections may take to finish at shutdown
    ticket_ttl_s: float = 30.0
    max_tickets: int = 10_000  # websocket tickets ([cluster]: per identity); the oldest goes first
    max_sessions: int = 10_000  # browser sessions ([cluster]: per identity); the oldest goes first
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
    #: The instrument masters, one per broker URL, shared with the order path's validation.
    instruments: InstrumentCaches = attrs.field(factory=InstrumentCaches)
    #: [cluster]: per account, this node's ownership of it (None: not clustered).
    ownership: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None
    #: [cluster]: the ownership counters `/metrics` shows (None: not clustered).
    cluster_counters: Callable[[], Mapping[str, Any]] | None = None
    #: [cluster]: keeps each access token loaded here for the other nodes (None: not clustered).
    tokens: Any = None  # web.credentials.TokenKeeper
    #: [cluster]: websocket tickets and browser sessions shared through Redis (None: this
    #: process's own, in memory).
    tickets: Tickets | None = None
    sessions: Sessions | None = None
    #: [cluster]: serves subscribers of accounts this node does not own from their streams
    #: (None: every subscriber is the actor's).
    remote: RemoteFeeds | None = None
    #: Client and admin tokens (None: made from `settings`, without the store's rotations).
    auth: Authenticator | None = None
    #: [cluster]: sends requests for accounts another node owns to their owner (web/forward.py;
    #: None: not clustered, or no shared secret, and such requests are refused 503).
    forwarder: Any = None


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
    tickets: Tickets
    sessions: Sessions
    streams: StreamRegistry
    activity: Activity
    converter: cattrs.Converter

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        self.activity.enter()
        try:
            await super().__call__(internal_scope(scope), receive, send)
        finally:
            self.activity.exit()

    def close_streams(self, reason: str = "shutdown") -> None:
        """Close every websocket subscriber (1001 for "shutdown") and refuse new ones."""
        self.streams.close_all(reason)


def current_deps() -> WebDeps:
    return cast(OrderDeskApp, current_app).deps


def current_web() -> OrderDeskApp:
    return cast(OrderDeskApp, current_app._get_current_object())  # type: ignore[attr-defined]
