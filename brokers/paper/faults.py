"""Fault injection state, set through `POST /_venue/faults` and cleared by `DELETE`.

- `reject_symbols`: orders for these symbols (`SYMBOL` or `EXCHANGE:SYMBOL`) are created and then
  REJECTED by "RMS" (POST still answers their order_id, as Kite does).
- `latency_ms`: every Kite REST answer (not `/_venue/*`) is held back this long *after* the
  request was processed: a client that times out has still had its order accepted.
- `fail_nth_order`: the Nth `POST /orders/...` from now (counted across the venue, every account,
  after authentication) answers 500 GeneralException and creates no order; then the fault clears.
- `fill_delay_ms`: a fill that would happen at placement waits this long (the order stays OPEN,
  whatever the simulated price does meanwhile).
- `partial_fill_ratio`: the first fill of an order takes this fraction of its quantity, rounded
  down to the lot (at least one lot; if that is the whole order it fills fully), pushed as an
  UPDATE frame; the remainder stays OPEN and fills at the next price event that finds it
  marketable (a simulation step, `POST /_venue/step`, a `POST /_venue/ltp`) or on
  `POST /_venue/fill/{order_id}`.
- `drop_order_frames_ratio`: this fraction of order frames (every account's, spread evenly: with
  0.3, 3 of every 10) is never sent; the sockets stay open and heartbeats go on, as on a link
  that loses pushes. Kite never replays a lost push: only `GET /orders` finds what it said.
- `drop_ticker`: an action, not a state: closes every ticker socket once (code 1011).
- `stall_ticker`: ticker sockets, existing and new, send nothing (no frames, no heartbeats) and
  stay open until cleared; order frames produced meanwhile are discarded, as on a dead link;
  market ticks are coalesced: once cleared, the latest tick of each instrument that moved.

Kite's refusals on thin contracts (see `liquidity.py`):

- `reject_market_symbols`: a MARKET (or SL-M) order for these symbols is refused at the POST with
  Kite's message for contracts with no trades ("... Try placing a LIMIT order.").
- `rest_protected_market`: a MARKET order with market protection finds nobody at the LTP: it
  becomes a LIMIT at the edge of its protection band and rests until the LTP reaches that edge.
- `cancel_refused_ms`: a cancel within this many ms of the order's placement (or its last
  modification) is refused, "being processed".
- `price_band_pct`: a LIMIT or SL price more than this many percent from the LTP is refused with
  Kite's circuit-limit message (0: no band).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import input_error

_KNOWN = frozenset({
    "reject_symbols", "latency_ms", "fail_nth_order", "fill_delay_ms", "partial_fill_ratio",
    "drop_ticker", "stall_ticker", "drop_order_frames_ratio", "reject_market_symbols",
    "rest_protected_market", "cancel_refused_ms", "price_band_pct",
})


@attrs.define
class Faults:
    reject_symbols: frozenset[str] = frozenset()
    latency_ms: int = 0
    fail_nth_order: int = 0
    fill_delay_ms: int = 0
    partial_fill_ratio: float = 0.0
    stall_ticker: bool = False
    drop_order_frames_ratio: float = 0.0
    reject_market_symbols: frozenset[str] = frozenset()
    rest_protected_market: bool = False
    cancel_refused_ms: int = 0
    price_band_pct: float = 0.0
    orders_seen: int = 0  # POSTs counted since fail_nth_order was set
    frames_seen: int = 0  # order frames counted since drop_order_frames_ratio was set

    def clear(self) -> None:
        for field in attrs.fields(Faults):
            setattr(self, field.name, field.default)

    def rejects(self, exchange: str, tradingsymbol: str) -> bool:
        return bool({tradingsymbol, f"{exchange}:{tradingsymbol}"} & self.reject_symbols)

    def rejects_market(self, exchange: str, tradingsymbol: str) -> bool:
        return bool({tradingsymbol, f"{exchange}:{tradingsymbol}"} & self.reject_market_symbols)

    def count_order(self) -> bool:
        """Count one order POST; True when this is the one to fail."""
        if not self.fail_nth_order:
            return False
        self.orders_seen += 1
        if self.orders_seen >= self.fail_nth_order:
            self.fail_nth_order = 0
            self.orders_seen = 0
            return True
        return False

    def drops_order_frame(self) -> bool:
        """Count one order frame; True when it is one to lose (the ratio, spread evenly)."""
        ratio = self.drop_order_frames_ratio
        if not ratio:
            return False
        seen = self.frames_seen
        self.frames_seen += 1
        return math.floor((seen + 1) * ratio) > math.floor(seen * ratio)

    def public(self) -> dict[str, Any]:
        return {
            "reject_symbols": sorted(self.reject_symbols),
            "latency_ms": self.latency_ms,
            "fail_nth_order": self.fail_nth_order,
            "fill_delay_ms": self.fill_delay_ms,
            "partial_fill_ratio": self.partial_fill_ratio,
            "stall_ticker": self.stall_ticker,
            "drop_order_frames_ratio": self.drop_order_frames_ratio,
            "reject_market_symbols": sorted(self.reject_market_symbols),
            "rest_protected_market": self.rest_protected_market,
            "cancel_refused_ms": self.cancel_refused_ms,
            "price_band_pct": self.price_band_pct,
        }


@attrs.frozen
class FaultUpdate:
    """A validated `POST /_venue/faults` body; fields left None are unchanged."""

    reject_symbols: frozenset[str] | None = None
    latency_ms: int | None = None
    fail_nth_order: int | None = None
    fill_delay_ms: int | None = None
    partial_fill_ratio: float | None = None
    drop_ticker: bool = False
    stall_ticker: bool | None = None
    drop_order_frames_ratio: float | None = None
    reject_market_symbols: frozenset[str] | None = None
    rest_protected_market: bool | None = None
    cancel_refused_ms: int | None = None
    price_band_pct: float | None = None

    def apply(self, faults: Faults) -> None:
        for name in ("reject_symbols", "latency_ms", "fill_delay_ms", "partial_fill_ratio",
                     "stall_ticker", "reject_market_symbols", "rest_protected_market",
                     "cancel_refused_ms", "price_band_pct"):
            value = getattr(self, name)
            if value is not None:
                setattr(faults, name, value)
        if self.fail_nth_order is not None:
            faults.fail_nth_order = self.fail_nth_order
            faults.orders_seen = 0
        if self.drop_order_frames_ratio is not None:
            faults.drop_order_frames_ratio = self.drop_order_frames_ratio
            faults.frames_seen = 0


def parse_faults(body: Any) -> FaultUpdate:
    if not isinstance(body, Mapping):
        raise input_error("The faults body must be a JSON object.")
    unknown = set(body) - _KNOWN
    if unknown:
        raise input_error(f"Unknown faults: {sorted(map(str, unknown))}.")
    symbols = _symbols(body, "reject_symbols")
    market_symbols = _symbols(body, "reject_market_symbols")
    band = body.get("price_band_pct")
    if band is not None and (not _is_number(band) or not math.isfinite(band)
                             or not 0 <= band <= 100):
        raise input_error("`price_band_pct` must be a number from 0 to 100.")
    return FaultUpdate(
        reject_symbols=symbols,
        reject_market_symbols=market_symbols,
        rest_protected_market=_flag(body, "rest_protected_market"),
        cancel_refused_ms=_millis(body, "cancel_refused_ms"),
        price_band_pct=float(band) if band is not None else None,
        latency_ms=_millis(body, "latency_ms"),
        fail_nth_order=_millis(body, "fail_nth_order"),
        fill_delay_ms=_millis(body, "fill_delay_ms"),
        partial_fill_ratio=_ratio(body, "partial_fill_ratio"),
        drop_ticker=_flag(body, "drop_ticker") or False,
        stall_ticker=_flag(body, "stall_ticker"),
        drop_order_frames_ratio=_ratio(body, "drop_order_frames_ratio"),
    )


def _symbols(body: Mapping[str, Any], name: str) -> frozenset[str] | None:
    symbols = body.get(name)
    if symbols is None:
        return None
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise input_error(f"`{name}` must be a list of symbols.")
    return frozenset(symbols)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _ratio(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value) or not 0 <= value < 1:
        raise input_error(f"`{name}` must be a number in [0, 1).")
    return float(value)


def _millis(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 600_000:
        raise input_error(f"`{name}` must be a whole number from 0 to 600000.")
    return value


def _flag(body: Mapping[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise input_error(f"`{name}` must be true or false.")
    return value
