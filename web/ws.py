"""`WS /ws/orders/{account_id}`: one account's order updates, live.

Per connection: authenticate (header, single-use `ticket`, or `access_token` query), subscribe to
the account's actor, send the subscription's initial messages (snapshot or `since` replay, then a
status), then live messages. One writer per socket: the sender task (the reader's rare replies
join the subscription's queue). A lagging subscriber gets what is waiting coalesced into
one frame holding a JSON array, in order. Messages arrive already encoded: nothing is encoded per
subscriber.

Close codes: 4400 bad query, 4401 missing/wrong credentials, 4403 another account's credentials,
4404 unknown account, 4008 slow consumer, 1001 shutdown, 1009 frame too large (hypercorn),
1011 anything unexpected. A disallowed browser Origin is refused before the upgrade (HTTP 403).
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, cast

import trio
from quart import Blueprint, current_app, jsonify, websocket

from actors.subscribers import SLOW_CONSUMER, Subscription

from .auth import Identity, bearer_token, origin_allowed
from .errors import error_body
from .middleware import log_websocket

if TYPE_CHECKING:
    from quart.wrappers import Websocket

    from .app import OrderDeskApp

log = logging.getLogger("web.ws")

blueprint = Blueprint("ws", __name__)

CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL = 1011
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_SLOW_CONSUMER = 4008

SHUTDOWN = "shutdown"
_PONG = '{"type":"pong"}'
_SNAPSHOT_TYPE = '"type":"snapshot"'  # the actor encodes compactly, "type" first
_SAMPLE_EVERY = 16  # frames between fanout-latency samples


class StreamRegistry:
    """The live websocket subscriptions of one app, so shutdown can close them all at once."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.closing: str | None = None

    def __len__(self) -> int:
        return len(self._subs)

    def add(self, sub: Subscription) -> None:
        self._subs.add(sub)
        if self.closing is not None:
            sub.close(self.closing)

    def discard(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def close_all(self, reason: str) -> None:
        self.closing = reason
        for sub in list(self._subs):
            sub.close(reason)


def close_code(reason: str | None) -> tuple[int, str]:
    if reason == SLOW_CONSUMER:
        return CLOSE_SLOW_CONSUMER, SLOW_CONSUMER
    if reason == SHUTDOWN:
        return CLOSE_GOING_AWAY, "server shutting down"
    return CLOSE_INTERNAL, reason or "subscription ended"


def _error_frame(message: str) -> str:
    return json.dumps({"type": "error", "message": message})


@blueprint.before_app_websocket
async def _check_origin() -> object:
    app = cast("OrderDeskApp", current_app)
    origin, host = websocket.headers.get("Origin"), websocket.headers.get("Host")
    if not origin_allowed(origin, app.deps.settings.allowed_origins, host):
        log_websocket(websocket, "refused", reason="origin")
        response = jsonify(error_body("forbidden", "origin not allowed"))
        response.status_code = 403
        return response
    return None


def _authenticate(app: OrderDeskApp, account_id: str) -> tuple[int, str] | Identity:
    """The caller's identity, or the close code and reason that refuse it."""
    args = websocket.args
    header = websocket.headers.get("Authorization")
    identity: Identity | None
    if header is not None:
        identity = app.auth.identify(bearer_token(header))
    elif "ticket" in args:
        redeemed = app.tickets.redeem(args["ticket"])
        if redeemed is None:
            return CLOSE_UNAUTHORIZED, "ticket unknown, used or expired"
        identity, ticket_account = redeemed
        if ticket_account != account_id:
            return CLOSE_FORBIDDEN, "ticket was issued for another account"
    else:
        identity = app.auth.identify(args.get("access_token"))
    if identity is None:
        return CLOSE_UNAUTHORIZED, "missing or invalid credentials"
    if account_id not in app.deps.actors:
        return CLOSE_NOT_FOUND, "unknown account"
    if not identity.may_access(account_id):
        return CLOSE_FORBIDDEN, "credentials of another account"
    return identity


def _since() -> int | None | str:
    raw = websocket.args.get("since")
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        return "since must be an integer >= 0"
    return int(raw)


@blueprint.websocket("/ws/orders/<account_id>")
async def orders_stream(account_id: str) -> None:
    app = cast("OrderDeskApp", current_app._get_current_object())  # type: ignore[attr-defined]
    ws = cast("Websocket", websocket._get_current_object())  # type: ignore[attr-defined]
    # Decide and subscribe before completing the handshake: a client whose handshake succeeded
    # is subscribed. Refusals are still sent as close codes (browsers cannot read HTTP errors).
    refusal: tuple[int, str] | None = None
    who = _authenticate(app, account_id)
    since = _since()
    if app.streams.closing is not None:
        refusal = CLOSE_GOING_AWAY, "server shutting down"
    elif isinstance(who, tuple):
        refusal = who
    elif isinstance(since, str):
        refusal = CLOSE_BAD_REQUEST, since
    if refusal is not None or isinstance(who, tuple) or isinstance(since, str):
        log_websocket(ws, "refused", account=account_id, code=refusal and refusal[0])
        await ws.accept()
        await ws.close(*(refusal or (CLOSE_INTERNAL, "refused")))
        return

    actor = app.deps.actors[account_id]
    metrics = app.deps.metrics
    gauge = metrics.websocket_connections.labels(account_id)
    sub = actor.subscribe(since)
    app.streams.add(sub)
    gauge.inc()
    opened = time.monotonic()
    try:
        await ws.accept()
        log_websocket(ws, "open", account=account_id, identity=who.name, since=since)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_reader, ws, sub)
            await _sender(ws, sub, app)
            nursery.cancel_scope.cancel()
        code, reason = close_code(sub.closed_reason)
        log_websocket(ws, "close", account=account_id, identity=who.name, code=code)
        await ws.close(code, reason)
    finally:
        app.streams.discard(sub)
        actor.unsubscribe(sub)
        gauge.dec()
        metrics.websocket_duration.observe(time.monotonic() - opened)


async def _sender(ws: Websocket, sub: Subscription, app: OrderDeskApp) -> None:
    """The socket's only writer: initial messages, then whatever is queued, coalesced per frame.

    Lean on purpose (one of these runs per subscriber per update): no lock, no encoding, no
    checkpoint of its own when messages are already waiting (the socket write is one).
    """
    config = app.deps.config
    max_messages, max_bytes = config.max_frame_messages, config.max_frame_bytes
    latency = app.deps.metrics.fanout_latency
    send = ws.send
    initial = sub.initial
    sub.initial = []
    if initial and _SNAPSHOT_TYPE in initial[0][:32]:
        await send(initial[0])  # a snapshot is always a frame of its own
        initial = initial[1:]
    for start in range(0, len(initial), max_messages):
        chunk = initial[start : start + max_messages]
        await send(chunk[0] if len(chunk) == 1 else "[" + ",".join(chunk) + "]")

    receive, receive_nowait = sub.receive.receive, sub.receive.receive_nowait
    frames = 0
    while True:
        try:
            first = receive_nowait()
        except trio.WouldBlock:
            try:
                first = await receive()
            except trio.EndOfChannel:
                return
        except trio.EndOfChannel:
            return
        batch = None
        size = len(first)
        while size < max_bytes:
            try:
                message = receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if batch is None:
                batch = [first]
            batch.append(message)
            size += len(message)
            if len(batch) >= max_messages:
                break
        frames += 1
        if frames % _SAMPLE_EVERY:
            await send(first if batch is None else "[" + ",".join(batch) + "]")
        else:
            started = time.perf_counter()
            await send(first if batch is None else "[" + ",".join(batch) + "]")
            latency.observe(time.perf_counter() - started)


async def _reader(ws: Websocket, sub: Subscription) -> None:
    """Answer `ping`; anything else gets an error frame and the connection stays usable.

    Replies join the subscription's own queue (`sub.offer`), so the sender stays the socket's
    only writer; a client that floods pings without reading is a slow consumer like any other.
    """
    while True:
        message = await ws.receive()
        if message == "ping" or message == '{"type":"ping"}':
            reply = _PONG
        elif isinstance(message, bytes):
            reply = _error_frame("binary frames are not supported; send the text 'ping'")
        else:
            reply = _error_frame("unsupported message; the only client message is 'ping'")
        if not sub.offer(reply):
            return
