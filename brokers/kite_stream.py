"""The Kite ticker websocket as a stream of order updates (`KiteBroker.open_stream` opens it).

Heartbeats keep it alive and cost as little as can be (an idle account's whole cost is its
heartbeat: hence our own lean client, `_ws_client`, read by the process's one `TickerReader`,
which absorbs heartbeats and finds stalls without waking this stream's consumer); binary
frames are market ticks, text frames order updates and errors.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ._ws_client import ConnectionClosed, Stalled, WebSocket
from .base import Order, TokenExpired, UpstreamLost
from .kite_ticks import FrameError, Mode, decode_prices

log = logging.getLogger("brokers.kite")  # its name before the move: log configs name it


class KiteOrderStream:
    """Order updates from one ticker connection; heartbeats keep it alive, and the market ticks
    of the instruments subscribed on it (`subscribe`, in `ltp` mode: the price is all the P&L
    needs) go to `on_prices` as (instrument token, last price), each frame decoded once."""

    def __init__(self, ws: WebSocket, parse_order: Callable[[dict[str, Any]], Order]) -> None:
        self._ws = ws
        self._parse_order = parse_order
        self.on_prices: Callable[[list[tuple[int, float]]], None] | None = None

    @property
    def last_frame_at(self) -> float | None:
        """trio time the last bytes arrived (heartbeats too); None before the first."""
        return self._ws.heard_at

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
        """The next order update; ticks and frames we cannot read are taken in passing
        (heartbeats and stalls are the websocket's: `Stalled` after its stall timeout)."""
        while True:
            message = await self._receive()
            if isinstance(message, bytes):
                self._ticks(message)
                continue
            order = self._order(message)
            if order is not None:
                return order

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
            return await self._ws.get_message()
        except Stalled as exc:
            raise UpstreamLost(f"no frame from the ticker for {exc.stall_timeout_s:g} s") from exc
        except ConnectionClosed as exc:
            if exc.code == 1008:
                raise TokenExpired(f"ticker closed: {exc.reason}") from exc
            raise UpstreamLost(f"ticker closed: {exc}") from exc
