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
- `drop_ticker`: an action, not a state: closes every ticker socket once (code 1011).
- `stall_ticker`: ticker sockets, existing and new, send nothing (no frames, no heartbeats) and
  stay open until cleared; order frames produced meanwhile are discarded, as on a dead link.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import input_error

_KNOWN = frozenset({
    "reject_symbols", "latency_ms", "fail_nth_order", "fill_delay_ms", "partial_fill_ratio",
    "drop_ticker", "stall_ticker",
})


@attrs.define
class Faults:
    reject_symbols: frozenset[str] = frozenset()
    latency_ms: int = 0
    fail_nth_order: int = 0
    fill_delay_ms: int = 0
    partial_fill_ratio: float = 0.0
    stall_ticker: bool = False
    orders_seen: int = 0  # POSTs counted since fail_nth_order was set

    def clear(self) -> None:
        for field in attrs.fields(Faults):
            setattr(self, field.name, field.default)

    def rejects(self, exchange: str, tradingsymbol: str) -> bool:
        return bool({tradingsymbol, f"{exchange}:{tradingsymbol}"} & self.reject_symbols)

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

    def public(self) -> dict[str, Any]:
        return {
            "reject_symbols": sorted(self.reject_symbols),
            "latency_ms": self.latency_ms,
            "fail_nth_order": self.fail_nth_order,
            "fill_delay_ms": self.fill_delay_ms,
            "partial_fill_ratio": self.partial_fill_ratio,
            "stall_ticker": self.stall_ticker,
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

    def apply(self, faults: Faults) -> None:
        for name in ("reject_symbols", "latency_ms", "fill_delay_ms", "partial_fill_ratio",
                     "stall_ticker"):
            value = getattr(self, name)
            if value is not None:
                setattr(faults, name, value)
        if self.fail_nth_order is not None:
            faults.fail_nth_order = self.fail_nth_order
            faults.orders_seen = 0


def parse_faults(body: Any) -> FaultUpdate:
    if not isinstance(body, Mapping):
        raise input_error("The faults body must be a JSON object.")
    unknown = set(body) - _KNOWN
    if unknown:
        raise input_error(f"Unknown faults: {sorted(map(str, unknown))}.")
    symbols = body.get("reject_symbols")
    if symbols is not None and (
        not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols)
    ):
        raise input_error("`reject_symbols` must be a list of symbols.")
    ratio = body.get("partial_fill_ratio")
    if ratio is not None and (
        not _is_number(ratio) or not math.isfinite(ratio) or not 0 <= ratio < 1
    ):
        raise input_error("`partial_fill_ratio` must be a number in [0, 1).")
    return FaultUpdate(
        reject_symbols=frozenset(symbols) if symbols is not None else None,
        latency_ms=_millis(body, "latency_ms"),
        fail_nth_order=_millis(body, "fail_nth_order"),
        fill_delay_ms=_millis(body, "fill_delay_ms"),
        partial_fill_ratio=float(ratio) if ratio is not None else None,
        drop_ticker=_flag(body, "drop_ticker") or False,
        stall_ticker=_flag(body, "stall_ticker"),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


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
