"""`WS /ws/orders/{account_id}`: one account's order updates, live.

Per connection: authenticate (header, single-use `ticket`, `access_token` query, or the session
cookie from an allowed Origin: web/callers.py), subscribe to the account's actor, send the
subscription's initial messages (snapshot or `since` replay, then a status, and with
`?positions=1` the positions), then live messages. A `positions` message is never queued as
such: the queue holds a wake-up (`LATEST`) and the sender takes the latest value when it gets
there, so a slow reader skips stale positions instead of filling its queue. Such a socket
may also watch instruments (`{"action":"watch",...}`, web/watch.py): their prices come in its
own `positions` messages. [cluster]: a subscriber of an account another node owns is fed from
the account's stream (`WebDeps.remote`), with the same frames and seqs (no `positions` yet).
One writer of messages per socket: the sender task (replies to what the client sends join the
subscription's queue); while it has nothing to do, the actor's fan-out writes new messages'
frames to the socket itself (see `_sender` and web/_frames.py; `WebConfig.direct_writes=False`
turns that off). A lagging subscriber gets what is waiting coalesced into one frame holding a
JSON array, in order. Messages arrive already encoded and each is framed once: nothing is
encoded per subscriber.

Close codes: 4400 bad query, 4401 missing/wrong credentials, or the browser session that opened
the socket ended (sign-out, its token rotated, expiry), 4403 another account's credentials,
4404 unknown account, 4008 slow consumer, 1001 shutdown, 1009 frame too large (hypercorn),
1011 anything unexpected. A disallowed browser Origin, and the session cookie without an
allowed Origin, are refused before the upgrade (HTTP 403).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, cast

import trio
from quart import Blueprint, Response, current_app, jsonify, websocket

from actors.account import LATEST, SLOW_CONSUMER, Subscription
from actors.errors import FieldError
from actors.requests import OrderStreamQuery

from . import queries
from ._frames import PARTIAL, REFUSED, DirectSocket, decline_compression, frame_of
from .callers import Caller, identify_browser, origin_refused
from .errors import Forbidden, ServiceUnavailable, Unauthorized, error_body
from .middleware import log_websocket
from .sessions import SESSION_ENDED
from .watch import Watcher, error_frame

if TYPE_CHECKING:
    from ._lean import LeanWebsocket as Websocket
    from .deps import OrderDeskApp

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
_FLUSH = ""  # queued by the fan-out after a partial direct write (never a message: all are JSON)


def close_code(reason: str | None) -> tuple[int, str]:
    if reason == SLOW_CONSUMER:
        return CLOSE_SLOW_CONSUMER, SLOW_CONSUMER
    if reason == SHUTDOWN:
        return CLOSE_GOING_AWAY, "server shutting down"
    if reason == SESSION_ENDED:
        return CLOSE_UNAUTHORIZED, SESSION_ENDED
    return CLOSE_INTERNAL, reason or "subscription ended"


@blueprint.before_app_websocket
async def _check_origin() -> object:
    app = cast("OrderDeskApp", current_app)
    if origin_refused(websocket, app.deps.settings.allowed_origins):
        return _refuse_upgrade("origin not allowed", reason="origin")
    return None


def _refuse_upgrade(message: str, *, reason: str, status: int = 403,
                    code: str = "forbidden") -> Response:
    log_websocket(websocket, "refused", reason=reason)
    response = jsonify(error_body(code, message))
    response.status_code = status
    return response


async def _authenticate(app: OrderDeskApp, account_id: str) -> tuple[int, str] | Caller:
    """The caller, or the close code and reason that refuse it (`Forbidden` is raised for a
    session cookie without an allowed Origin, `ServiceUnavailable` when the shared books do
    not answer: those are refused before the upgrade)."""
    try:
        caller = await identify_browser(websocket, app, ticket=True)
    except Unauthorized as exc:
        return CLOSE_UNAUTHORIZED, exc.message
    if caller.ticket_account not in (None, account_id):
        return CLOSE_FORBIDDEN, "ticket was issued for another account"
    if caller.session is not None and await app.sessions.get(caller.session) is None:
        return CLOSE_UNAUTHORIZED, SESSION_ENDED  # a ticket of a session that ended since
    if account_id not in app.deps.actors:
        return CLOSE_NOT_FOUND, "unknown account"
    if not caller.identity.may_access(account_id):
        return CLOSE_FORBIDDEN, "credentials of another account"
    return caller


def _query() -> OrderStreamQuery | str:
    """Where the client resumes and what it wants, or why the query is refused (the close
    reason)."""
    app = cast("OrderDeskApp", current_app)
    return queries.stream_query(app.converter, websocket.args)


@blueprint.websocket("/ws/orders/<account_id>")
async def orders_stream(account_id: str) -> Response | None:
    app = cast("OrderDeskApp", current_app._get_current_object())  # type: ignore[attr-defined]
    ws = cast("Websocket", websocket._get_current_object())  # type: ignore[attr-defined]
    # Decide and subscribe before completing the handshake: a client whose handshake succeeded
    # is subscribed. Refusals are still sent as close codes (browsers cannot read HTTP errors).
    refusal: tuple[int, str] | None = None
    try:
        who = await _authenticate(app, account_id)
    except Forbidden as exc:
        return _refuse_upgrade(exc.message, reason="cookie origin")
    except ServiceUnavailable as exc:
        return _refuse_upgrade(exc.message, reason="books unavailable", status=exc.status,
                               code=exc.code)
    query = _query()
    if app.streams.closing is not None:
        refusal = CLOSE_GOING_AWAY, "server shutting down"
    elif isinstance(who, tuple):
        refusal = who
    elif isinstance(query, str):
        refusal = CLOSE_BAD_REQUEST, query
    if refusal is not None or isinstance(who, tuple) or isinstance(query, str):
        log_websocket(ws, "refused", account=account_id, code=refusal and refusal[0])
        await ws.accept()
        await ws.close(*(refusal or (CLOSE_INTERNAL, "refused")))
        return None

    actor = app.deps.actors[account_id]
    metrics = app.deps.metrics
    gauge = metrics.websocket_connections.labels(account_id)
    since = query.since
    remote = app.deps.remote
    if remote is not None and not remote.local(account_id):  # [cluster]: another node's
        try:
            sub = await remote.subscribe(account_id, since)
        except ServiceUnavailable as exc:
            return _refuse_upgrade(exc.message, reason=f"stream unavailable: {exc.message}",
                                   status=exc.status, code=exc.code)
        unsubscribe = remote.unsubscribe
    else:
        # (only asked when wanted: the stand-in actors of some tests know no `positions`)
        sub = actor.subscribe(since, positions=True) if query.positions else actor.subscribe(since)
        unsubscribe = actor.unsubscribe
    app.streams.add(sub)
    if who.session is not None and not app.sessions.attach(who.session, sub):
        sub.close(SESSION_ENDED)  # it ended since it was checked (4401)
    gauge.inc()
    opened = time.monotonic()
    try:
        watcher = Watcher(app, actor, sub) if query.positions and sub.positions else None
        ws.on_message = partial(_on_message, sub, watcher)  # before accepting: none earlier
        if not app.deps.config.websocket_compression:
            decline_compression(ws.asgi_send)
        await ws.accept()
        log_websocket(ws, "open", account=account_id, identity=who.identity.name, since=since)
        async with trio.open_nursery() as nursery:
            if watcher is not None:
                nursery.start_soon(watcher.serve)
            await _sender(ws, sub, app)
            nursery.cancel_scope.cancel()
        code, reason = close_code(sub.closed_reason)
        log_websocket(ws, "close", account=account_id, identity=who.identity.name, code=code)
        await ws.close(code, reason)
    finally:
        app.streams.discard(sub)
        if who.session is not None:
            app.sessions.detach(who.session, sub)
        unsubscribe(sub)
        gauge.dec()
        metrics.websocket_duration.observe(time.monotonic() - opened)


async def _sender(ws: Websocket, sub: Subscription, app: OrderDeskApp) -> None:
    """The socket's only writer of messages: initial ones, then whatever is queued, coalesced.

    Where the connection allows it (`web._frames.DirectSocket`) frames are built here once and
    written under hypercorn's send lock, and while this task waits with nothing queued the
    actor's fan-out writes each new message's frame to the socket itself (`sub.direct`); the
    first message it cannot write at once (socket busy or full) and everything after it come
    through the queue, coalesced, until this task has caught up. Lean on purpose: no encoding
    per subscriber, and when messages are waiting no checkpoint of its own beyond the write.
    """
    config = app.deps.config
    max_messages, max_bytes = config.max_frame_messages, config.max_frame_bytes
    latency = app.deps.metrics.fanout_latency
    direct = DirectSocket.open(ws.asgi_send) if config.direct_writes else None
    if direct is None:
        send = ws.send
    else:
        send_frame = direct.send

        async def send(text: str) -> None:
            await send_frame(frame_of(text))

    initial = sub.initial
    sub.initial = []
    if initial and _SNAPSHOT_TYPE in initial[0][:32]:
        await send(initial[0])  # a snapshot is always a frame of its own
        initial = initial[1:]
    for start in range(0, len(initial), max_messages):
        chunk = initial[start : start + max_messages]
        await send(chunk[0] if len(chunk) == 1 else "[" + ",".join(chunk) + "]")

    if direct is not None:
        sub.direct = _write_now(sub, direct)
    receive, receive_nowait = sub.receive.receive, sub.receive.receive_nowait
    frames = 0
    try:
        while True:
            try:
                first = receive_nowait()
            except trio.WouldBlock:
                latest = sub.take_latest()  # its wake-up did not fit a full queue
                if latest is not None:
                    await send(latest)
                    continue
                sub.idle = direct is not None  # nothing queued, nothing in flight
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
            if first == LATEST or (batch is not None and LATEST in batch):
                batch = _with_latest(sub, batch or [first])
                if not batch:
                    continue
                first = batch[0]
                batch = batch if len(batch) > 1 else None
            if direct is not None and (batch is not None or first is _FLUSH):
                # the fan-out's marks that a frame it wrote in part needs finishing: any write
                # through the send lock finishes it first
                batch = [m for m in (batch or (first,)) if m is not _FLUSH]
                if not batch:
                    await direct.flush()
                    continue
                first = batch[0]
                if len(batch) == 1:
                    batch = None
            frames += 1
            if frames % _SAMPLE_EVERY:
                await send(first if batch is None else "[" + ",".join(batch) + "]")
            else:
                started = time.perf_counter()
                await send(first if batch is None else "[" + ",".join(batch) + "]")
                latency.observe(time.perf_counter() - started)
    finally:
        sub.idle = False
        sub.direct = None


def _with_latest(sub: Subscription, messages: list[str]) -> list[str]:
    """The messages with the wake-up of a `positions` message replaced by its latest value."""
    out = []
    for message in messages:
        if message == LATEST:
            latest = sub.take_latest()
            if latest is None:
                continue
            message = latest
        out.append(message)
    return out


def _write_now(sub: Subscription, direct: DirectSocket) -> Callable[[str], bool]:
    """`sub.direct`: write the message's frame (built once per message) from the fan-out."""
    try_send = direct.try_send

    def write_now(message: str) -> bool:
        if sub.closed_reason is not None:
            return False
        result = try_send(frame_of(message))
        if result == PARTIAL:
            sub.offer(_FLUSH)  # wake the sender: the rest goes out before anything else
        return result != REFUSED

    return write_now


def _on_message(sub: Subscription, watcher: Watcher | None, message: str | bytes) -> None:
    """Answer `ping`, take `watch`/`unwatch` (web/watch.py); anything else gets an error
    frame and the connection stays usable.

    Called for each message as it arrives (`LeanWebsocket.on_message`). Replies join the
    subscription's own queue (`sub.offer`), so the sender stays the socket's only writer of
    messages; a client that floods pings without reading is a slow consumer like any other.
    """
    if message == "ping" or message == '{"type":"ping"}':
        reply = _PONG
    elif isinstance(message, bytes):
        reply = error_frame("binary frames are not supported; send the text 'ping'")
    else:
        raw = _action_of(message)
        if raw is None:
            reply = error_frame("unsupported message; the only client message is 'ping'")
        elif watcher is None:
            reply = error_frame("watching needs the socket opened with ?positions=1",
                                FieldError("action", "positions", ""))
        else:
            answer = watcher.offer(raw)
            if answer is None:
                return
            reply = answer
    sub.offer(reply)


def _action_of(message: str) -> dict[str, object] | None:
    """A client message that names an `action` (watch, unwatch), or None."""
    if '"action"' not in message:
        return None
    try:
        raw = json.loads(message)
    except ValueError:
        return None
    return raw if isinstance(raw, dict) and "action" in raw else None
