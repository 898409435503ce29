"""Kite's refusals on thin contracts, and its per-order modification limit.

On Kite a MARKET order is refused on a contract with no trades (and on stock options), a LIMIT
far from the last price is refused as beyond the circuit limits, a MARKET order with market
protection becomes a LIMIT at the edge of its protection band that can stay OPEN, a cancel that
races the order's own processing is refused, and an order can be modified 25 times at most.
The faults (`faults.py`) switch the first four on; the modification limit always holds. The
messages are Kite's own text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from .errors import input_error
from .faults import Faults
from .instruments import Instrument
from .prices import on_tick

NO_TRADES_MESSAGE = ("The market order was rejected since there are no trades in this "
                     "instrument. Try placing a LIMIT order.")
CIRCUIT_MESSAGE = ("Price exceeds circuit limits for the instrument. Place an order within the "
                   "daily range.")
PROCESSING_MESSAGE = "Order cannot be cancelled as it is being processed. Try later."
MODIFICATIONS_MESSAGE = "Maximum allowed order modifications exceeded."
MAX_MODIFICATIONS = 25  # Kite's limit per order
AUTO_PROTECTION_PCT = 5.0  # market_protection -1 ("automatic"): the band the paper venue uses


def check_market(faults: Faults, instrument: Instrument, order_type: str) -> None:
    """`reject_market_symbols`: MARKET and SL-M are refused for these contracts."""
    if order_type in ("MARKET", "SL-M") and faults.rejects_market(instrument.exchange,
                                                                  instrument.tradingsymbol):
        raise input_error(NO_TRADES_MESSAGE)


def check_band(faults: Faults, ltp: float, order_type: str, price: float) -> None:
    """`price_band_pct`: a LIMIT or SL price further than the band from the LTP is refused."""
    band = faults.price_band_pct
    if band and order_type in ("LIMIT", "SL") and abs(price - ltp) > ltp * band / 100 + 1e-9:
        raise input_error(CIRCUIT_MESSAGE)


def resting_price(
    faults: Faults, instrument: Instrument, side: str, ltp: float, protection: float
) -> float | None:
    """`rest_protected_market`: the LIMIT price a protected MARKET order rests at (the edge of
    its protection band, inside the price band), or None when it fills as usual."""
    if not faults.rest_protected_market or not protection:
        return None
    percent = AUTO_PROTECTION_PCT if protection < 0 else protection
    if faults.price_band_pct:
        percent = min(percent, faults.price_band_pct)
    sign = 1 if side == "BUY" else -1
    return on_tick(ltp * (1 + sign * percent / 100), instrument.tick_size)


def reached(side: str, ltp: float, price: float) -> bool:
    """Has the LTP reached a resting protected order's price (a BUY's from below)?"""
    return ltp >= price if side == "BUY" else ltp <= price


def check_cancel(faults: Faults, touched_at: float | None, now: float) -> None:
    """`cancel_refused_ms`: a cancel this soon after placement or modification is refused."""
    if (faults.cancel_refused_ms and touched_at is not None
            and (now - touched_at) * 1000 < faults.cancel_refused_ms):
        raise input_error(PROCESSING_MESSAGE)


def check_modifications(history: Iterable[str]) -> None:
    """Kite refuses an order's 26th modification (`history`: its states as JSON text)."""
    modified = sum(1 for row in history if json.loads(row).get("status") == "MODIFIED")
    if modified >= MAX_MODIFICATIONS:
        raise input_error(MODIFICATIONS_MESSAGE)
