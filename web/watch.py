"""Instruments an order-websocket subscriber watches: `{"action":"watch"|"unwatch",
"instruments":["NFO:NIFTY26DECFUT", ...]}` on a socket opened with `?positions=1`.

The message is structured into `WatchRequest` by the converter (shape rules here), then the
instruments are looked up in the broker's master (a load may await the broker, so requests
are served by a task of the socket, in order) and handed to the account's market
subscriptions (`LivePositions.set_watched`: one upstream subscription per instrument, shared
by reference count). Problems answer with an `error` message naming the field and the rule.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, get_args

import attrs
import cattrs
import trio

from actors.account import Subscription
from actors.errors import FieldError
from actors.requests import MAX_WATCHED, Exchange, WatchRequest
from brokers.base import BrokerError

from .errors import InvalidInput

if TYPE_CHECKING:
    from .deps import OrderDeskApp

__all__ = ["Watcher", "error_frame", "structure_watch"]

_FIELDS = frozenset(a.name for a in attrs.fields(WatchRequest))
_EXCHANGES = get_args(Exchange)
_PENDING = 8  # watch requests waiting for their lookup, per socket


def error_frame(message: str, problem: FieldError | None = None) -> str:
    """An `error` message; with a problem, its field and rule too."""
    body: dict[str, Any] = {"type": "error", "message": message}
    if problem is not None:
        body.update(field=problem.path, rule=problem.rule)
    return json.dumps(body)


def structure_watch(raw: Any, _: type = WatchRequest) -> WatchRequest:
    """A client's watch message as a `WatchRequest`, or InvalidInput (its first problem)."""
    if not isinstance(raw, dict):
        raise InvalidInput([FieldError("", "type", "a watch message is a JSON object")])
    unknown = sorted(set(raw) - _FIELDS - {"type"})
    if unknown:
        raise InvalidInput([FieldError(unknown[0], "unknown", f"unknown field {unknown[0]!r}")])
    action = raw.get("action")
    if action not in ("watch", "unwatch"):
        raise InvalidInput([FieldError("action", "enum", "action must be watch or unwatch")])
    instruments = raw.get("instruments")
    if not isinstance(instruments, list):
        raise InvalidInput([FieldError("instruments", "type",
                                       "instruments must be a list of EXCHANGE:TRADINGSYMBOL")])
    if not 1 <= len(instruments) <= MAX_WATCHED:
        raise InvalidInput([FieldError("instruments", "range",
                                       f"instruments must hold 1 to {MAX_WATCHED} entries")])
    for i, name in enumerate(instruments):
        if not isinstance(name, str) or name.count(":") != 1 or ":" in (name[0], name[-1]):
            raise InvalidInput([FieldError(f"instruments[{i}]", "format",
                                           "an instrument is EXCHANGE:TRADINGSYMBOL")])
        if name.split(":")[0] not in _EXCHANGES:
            raise InvalidInput([FieldError(f"instruments[{i}]", "enum",
                                           f"the exchange must be one of {', '.join(_EXCHANGES)}")])
    return WatchRequest(action=action, instruments=tuple(instruments))


class Watcher:
    """One socket's watch requests, served in order by `serve` (a task of the socket)."""

    def __init__(self, app: OrderDeskApp, actor: Any, sub: Subscription) -> None:
        self._converter: cattrs.Converter = app.converter
        self._cache = app.deps.instruments.for_broker(actor.broker)
        self._live = actor.live
        self._sub = sub
        self._send, self._receive = trio.open_memory_channel[WatchRequest](_PENDING)

    def offer(self, raw: Any) -> str | None:
        """Take a parsed client message; the error message to answer now, or None."""
        try:
            request = self._converter.structure(raw, WatchRequest)
        except InvalidInput as exc:
            return error_frame(exc.fields[0].message, exc.fields[0])
        try:
            self._send.send_nowait(request)
        except trio.WouldBlock:
            return error_frame("too many watch messages waiting; wait for the positions")
        return None

    async def serve(self) -> None:
        async for request in self._receive:
            error = await self._apply(request)
            if error is not None:
                self._sub.offer(error)

    async def _apply(self, request: WatchRequest) -> str | None:
        names = [name.split(":", 1) for name in request.instruments]
        try:
            await self._cache.load({exchange for exchange, _ in names})
        except BrokerError as exc:
            return error_frame(f"the instrument master could not be loaded: {exc}")
        watched = dict(self._sub.watched)
        for i, (exchange, symbol) in enumerate(names):
            info = self._cache.get(exchange, symbol)
            if info is None or not info.instrument_token:
                problem = FieldError(f"instruments[{i}]", "known",
                                     f"unknown instrument {exchange}:{symbol}")
                return error_frame(problem.message, problem)
            if request.action == "watch":
                watched[info.instrument_token] = (exchange, symbol)
            else:
                watched.pop(info.instrument_token, None)
        if len(watched) > MAX_WATCHED:
            problem = FieldError("instruments", "range",
                                 f"a socket watches at most {MAX_WATCHED} instruments")
            return error_frame(problem.message, problem)
        self._live.set_watched(self._sub, watched)
        return None
