"""Kite's refusals of an order's own fields, checked at placement and modification alike:
lot size, freeze limit, price and trigger present and on the tick, the stop-loss side, CNC
only for equity, market protection (thin-contract refusals are in `liquidity.py`)."""

from __future__ import annotations

import math

from .errors import input_error
from .instruments import Instrument

PROTECTION_MESSAGE = (
    "Market orders without market protection are not allowed via API. "
    "Please set market protection or use a Limit order."
)


def on_tick(value: float, tick: float) -> bool:
    steps = value / tick
    return math.isclose(steps, round(steps), abs_tol=1e-6)


def check_protection(required: bool, order_type: str, protection: float) -> None:
    """`require_market_protection`: a MARKET or SL-M order must say how far it may fill."""
    if required and order_type in ("MARKET", "SL-M") and protection == 0:
        raise input_error(PROTECTION_MESSAGE)


def check_order(
    i: Instrument, order_type: str, side: str, quantity: int, price: float,
    trigger: float, product: str,
) -> None:
    if product == "CNC" and i.exchange not in ("NSE", "BSE"):
        raise input_error("Invalid `product`: CNC is for equity delivery only.")
    if quantity % i.lot_size:
        raise input_error(f"Quantity should be a multiple of the lot size ({i.lot_size}).")
    if i.freeze_quantity is not None and quantity > i.freeze_quantity:
        raise input_error(
            f"Quantity exceeds the freeze limit of {i.freeze_quantity}. "
            "Place smaller orders or use autoslice."
        )
    if order_type in ("LIMIT", "SL") and price <= 0:
        raise input_error("Invalid `price`: LIMIT and SL orders need a price.")
    if order_type in ("SL", "SL-M") and trigger <= 0:
        raise input_error("Invalid `trigger_price`: SL and SL-M orders need a trigger price.")
    for value in (price, trigger):
        if value and not on_tick(value, i.tick_size):
            raise input_error(
                f"Tick size for this script is {i.tick_size:.2f}. Kindly enter price in the "
                "multiple of tick size for this script"
            )
    if order_type == "SL" and (trigger - price) * (1 if side == "BUY" else -1) > 0:
        raise input_error(
            "Trigger price for stoploss buy orders should be lower than the limit price, "
            "and for sell orders higher."
        )
