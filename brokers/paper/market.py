"""Market ticks on the venue's ticker, in Kite's binary format (`brokers.kite_ticks`).

A socket subscribes with Kite's messages: `{"a": "subscribe", "v": [tokens]}` (mode `quote`),
`{"a": "unsubscribe", "v": [tokens]}`, `{"a": "mode", "v": [mode, [tokens]]}`. Right after a
subscribe or a mode change the socket gets the current tick of those instruments, as Kite sends a
snapshot; afterwards a tick goes out whenever an instrument's price moves: at once on
`/_venue/ltp`, and every `tick_interval_s` when the simulation steps (every instrument moves).
Tokens the venue does not list count as subscribed but never tick, as on Kite.

Kite's limits: 3,000 instruments per connection (beyond them the subscribe is refused with an
error text frame and nothing of it is subscribed), 3 connections per API key and user (the
venue's accounts share one API key, so per account; a 4th handshake is refused with 429).
Ticks carry the simulated price and session figures derived from it: open is the previous
close, high/low the range seen, a lot traded per move, five depth levels a tick apart a side.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Any

import attrs
import trio

from ..kite_ticks import MODES, Depth, DepthEntry, Mode, Ohlc, Tick, encode_frame
from .instruments import Instrument, InstrumentMaster
from .prices import PriceBook

MAX_TOKENS_PER_CONNECTION = 3000
STALL_CHECK_S = 0.05
_LEVELS = range(1, 6)  # five depth levels a side, k lots at k ticks from the price
_DEPTH_LOTS = sum(_LEVELS)


class SubscriptionError(ValueError):
    """A ticker message the venue refuses; its text goes back as an error frame."""


@attrs.define
class _Session:
    """What the simulation traded in one instrument since the start (or a reset)."""

    high: float
    low: float
    moves: int = 0
    turnover: float = 0.0
    last_at: int = 0


@attrs.define(eq=False)
class TickSubscription:
    """One socket's instruments and modes, and the ones with a tick due."""

    owner: str  # API key and user: what the connection limit counts by
    modes: dict[int, Mode] = attrs.field(factory=dict)
    due: set[int] = attrs.field(factory=set)
    wake: trio.Event = attrs.field(factory=trio.Event)

    def mark(self, tokens: Iterable[int]) -> None:
        before = len(self.due)
        self.due.update(t for t in tokens if t in self.modes)
        if len(self.due) > before:
            self.wake.set()

    def take(self) -> list[tuple[int, Mode]]:
        due = [(t, self.modes[t]) for t in sorted(self.due) if t in self.modes]
        self.due.clear()
        return due

    async def wait_due(self) -> None:
        await self.wake.wait()
        self.wake = trio.Event()


class MarketData:
    """Ticks of the venue's instruments, and every socket's subscriptions."""

    def __init__(
        self, master: InstrumentMaster, prices: PriceBook, connections_per_key: int
    ) -> None:
        self._by_token = {i.instrument_token: i for i in master.instruments}
        self._prices = prices
        self._connections_per_key = connections_per_key
        self._subs: set[TickSubscription] = set()
        self._sessions: dict[int, _Session] = {}
        prices.watch(self.moved)

    # ---- connections ----------------------------------------------------------------------

    def connect(self, owner: str) -> TickSubscription | None:
        """A new socket's subscriptions, or None past the connections allowed per owner."""
        if sum(s.owner == owner for s in self._subs) >= self._connections_per_key:
            return None
        sub = TickSubscription(owner)
        self._subs.add(sub)
        return sub

    def disconnect(self, sub: TickSubscription) -> None:
        self._subs.discard(sub)

    def handle(self, sub: TickSubscription, message: dict[str, Any]) -> None:
        """Apply a Kite ticker message; SubscriptionError names what is wrong with it."""
        action, value = message.get("a"), message.get("v")
        if action == "subscribe":
            tokens = self._tokens(value)
            fresh = tokens - sub.modes.keys()
            if len(sub.modes) + len(fresh) > MAX_TOKENS_PER_CONNECTION:
                raise SubscriptionError(
                    f"Subscription limit exceeded: at most {MAX_TOKENS_PER_CONNECTION} "
                    f"instruments per connection ({len(sub.modes)} subscribed, "
                    f"{len(fresh)} more asked)."
                )
            sub.modes.update(dict.fromkeys(fresh, "quote"))
            sub.mark(tokens)
        elif action == "unsubscribe":
            for token in self._tokens(value):
                sub.modes.pop(token, None)
        elif action == "mode":
            if not (isinstance(value, list) and len(value) == 2 and value[0] in MODES):
                raise SubscriptionError(
                    f"Invalid mode message: `v` must be [mode, [tokens]], mode one of "
                    f"{', '.join(MODES)}."
                )
            tokens = self._tokens(value[1]) & sub.modes.keys()
            sub.modes.update(dict.fromkeys(tokens, value[0]))
            sub.mark(tokens)
        # anything else (Kite clients send nothing else) is ignored, as before

    def _tokens(self, value: object) -> set[int]:
        if not isinstance(value, list) or not all(
            isinstance(t, int) and not isinstance(t, bool) for t in value
        ):
            raise SubscriptionError("Invalid message: `v` must be a list of instrument tokens.")
        return set(value)

    # ---- prices ---------------------------------------------------------------------------

    def reset(self) -> None:
        self._sessions.clear()

    def moved(self, instruments: Collection[Instrument]) -> None:
        """PriceBook's watcher: count the move, and mark a tick due wherever subscribed."""
        now = int(time.time())
        for i in instruments:
            ltp = self._prices.ltp(i)
            s = self._session(i)
            s.high, s.low = max(s.high, ltp), min(s.low, ltp)
            s.moves, s.turnover, s.last_at = s.moves + 1, s.turnover + ltp, now
        tokens = [i.instrument_token for i in instruments]
        for sub in self._subs:
            sub.mark(tokens)

    def _session(self, i: Instrument) -> _Session:
        session = self._sessions.get(i.instrument_token)
        if session is None:
            close = self._prices.close(i)
            session = self._sessions[i.instrument_token] = _Session(close, close)
        return session

    def tick(self, token: int, mode: Mode = "full", now: int | None = None) -> Tick:
        """The instrument's tick now, with what `mode` carries (full: everything)."""
        i = self._by_token[token]
        ltp = self._prices.ltp(i)
        if mode == "ltp":
            return Tick(token, "ltp", ltp)
        close, s, lot = self._prices.close(i), self._session(i), i.lot_size
        quote = Tick(
            token, "quote", ltp, last_traded_quantity=lot,
            average_traded_price=round(s.turnover / s.moves, 2) if s.moves else ltp,
            volume_traded=lot * s.moves, total_buy_quantity=lot * _DEPTH_LOTS,
            total_sell_quantity=lot * _DEPTH_LOTS,
            ohlc=Ohlc(close, max(s.high, ltp), min(s.low, ltp), close),
            change=(ltp - close) * 100 / close if close else 0,
        )
        if mode == "quote":
            return quote
        now = int(time.time()) if now is None else now
        step = i.tick_size or 0.05
        buy = tuple(DepthEntry(lot * k, round(max(ltp - k * step, step), 2), k) for k in _LEVELS)
        sell = tuple(DepthEntry(lot * k, round(ltp + k * step, 2), k) for k in _LEVELS)
        return attrs.evolve(
            quote, mode="full", last_trade_time=s.last_at or now, oi=0, oi_day_high=0,
            oi_day_low=0, exchange_timestamp=now, depth=Depth(buy, sell),
        )

    def frame(self, due: Iterable[tuple[int, Mode]]) -> bytes | None:
        now = int(time.time())
        pairs = [(self.tick(token, mode, now), mode) for token, mode in due
                 if token in self._by_token]
        return encode_frame(pairs) if pairs else None


async def send_ticks(
    market: MarketData, sub: TickSubscription, send_bytes: Callable[[bytes], Awaitable[None]],
    stalled: Callable[[], bool],
) -> None:
    """Send each tick that falls due, coalesced per wake-up; during a ticker stall none go out
    (the due ones follow once it clears). Runs until cancelled."""
    while True:
        await sub.wait_due()
        if stalled():  # the due ticks stay due; look again shortly
            await trio.sleep(STALL_CHECK_S)
            sub.wake.set()
            continue
        frame = market.frame(sub.take())
        if frame is not None:
            await send_bytes(frame)


def error_frame(message: str) -> str:
    return json.dumps({"type": "error", "data": message})
