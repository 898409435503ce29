"""The Kite ticker websocket as a stream of order updates (`KiteBroker.open_stream` opens it).

Heartbeats keep it alive and cost as little as can be (an idle account's whole cost is its
heartbeat: hence our own lean client, `_ws_client`, whose `get_message` is the only reader);
binary frames are market ticks, text frames order updates and errors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import trio

from ._ws_client import ConnectionClosed, WebSocket
from .base import Order, TokenExpired, UpstreamLost
from .kite_ticks import FrameError, Mode, decode_prices

log = logging.getLogger("brokers.kite")  # its name before the move: log configs name it


class KiteOrderStream:
    """Order updates from one ticker connection; heartbeats keep it alive, and the market ticks
    of the instruments subscribed on it (`subscribe`, in `ltp` mode: the price is all the P&L
    needs) go to `on_prices` as (instrument token, last price), each frame decoded once."""

    def __init__(
        self, ws: WebSocket, stall_timeout_s: float,
        parse_order: Callable[[dict[str, Any]], Order],
    ) -> None:
        self._ws = ws
        self._parse_order = parse_order
        self._stall_timeout_s = stall_timeout_s
        self.last_frame_at: float | None = None  # trio time of the last frame received
        self._heard_at = trio.current_time()  # of the last frame, or of the connection
        self.on_prices: Callable[[list[tuple[int, float]]], None] | None = None

    async def subscribe(self, tokens: Sequence[int], mode: Mode = "ltp") -> None:
        """Subscribe these instruments on this connection (Kite's subscribe, then mode)."""
        if tokens:
            await self._send({"a": "subscribe", "v": list(tokens)})
            await self._send({"a": "mode", "v": [mode, list(tokens)]})

    async def unsubscribe(self, tokens: Sequence[int]) -> None:
        if tokens:
            await self._send({"a": "unsubscribe", "v": list(tokens)})

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            await self._ws.send_message(json.dumps(message))
        except ConnectionClosed as exc:
            raise UpstreamLost(f"ticker closed: {exc}") from exc

    def _ticks(self, frame: bytes) -> None:
        if len(frame) <= 1 or self.on_prices is None:
            return  # a heartbeat, or nobody listening
        try:
            prices = decode_prices(frame)
        except FrameError as exc:
            log.warning("ticker sent a binary frame we cannot read: %s", exc)
            return
        self.on_prices(prices)

    def __aiter__(self) -> KiteOrderStream:
        return self

    async def __anext__(self) -> Order:
        """The next order update; heartbeats, ticks and frames we cannot read are taken in
        passing. Stall detection costs next to nothing per frame (an idle account's whole
        cost is its heartbeat): one cancel scope, not one per frame, whose deadline a frame
        pushes forward only once it is less than half the timeout away (a heap push every few
        heartbeats; a scope that fires costs far more: measured). Should it fire with a frame
        heard meanwhile, the next scope counts from that frame; none is a stall. The silence
        counts from the later of the last frame and this call."""
        stall = self._stall_timeout_s
        since = trio.current_time()  # a consumer busy elsewhere is no silent ticker
        while True:
            deadline = max(self._heard_at, since) + stall  # the scope's, kept at hand
            with trio.move_on_at(deadline) as watch:
                while True:
                    message = await self._receive()
                    if deadline - self._heard_at < stall / 2:
                        deadline = watch.deadline = self._heard_at + stall  # never in vain
                    if isinstance(message, bytes):
                        self._ticks(message)
                        continue
                    order = self._order(message)
                    if order is not None:
                        return order
            if trio.current_time() - max(self._heard_at, since) >= stall:
                raise UpstreamLost(f"no frame from the ticker for {stall:g} s")

    def _order(self, message: str) -> Order | None:
        """A text frame's order update (None: some other message, or one we cannot read)."""
        try:
            frame = json.loads(message)
        except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
            log.warning("ticker sent a frame that is not JSON: %.80r", message)
            return None
        if not isinstance(frame, dict):
            return None
        if frame.get("type") == "order" and isinstance(frame.get("data"), dict):
            try:
                return self._parse_order(frame["data"])
            except Exception:  # one malformed push must not take the stream down
                log.warning("ticker sent an order we cannot read: %.200r", frame["data"])
                return None
        if frame.get("type") == "error":
            log.warning("ticker error: %s", frame.get("data"))
        return None

    async def _receive(self) -> str | bytes:
        try:
            message = await self._ws.get_message()
        except ConnectionClosed as exc:
            if exc.code == 1008:
                raise TokenExpired(f"ticker closed: {exc.reason}") from exc
            raise UpstreamLost(f"ticker closed: {exc}") from exc
        self.last_frame_at = self._heard_at = trio.current_time()
        return message
