"""Validation of batch and single-order bodies, before anything is sent to the broker.

Every problem is collected (not just the first) and reported by field path (`orders[2].quantity`)
with a machine-readable rule, so a client fixes a basket in one round trip. Only the shape, the
instrument master and the trading calendar are consulted here; the margin check is the broker's.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from brokers.base import OrderRequest

from ..calendar import IST, TradingCalendar
from ..errors import FieldError, InvalidRequest
from ..instruments import InstrumentInfo
from ..symbols import Contracts, expired_message

__all__ = ["IST", "BatchSpec", "FieldError", "InvalidRequest", "TradingCalendar",
           "validate_batch", "validate_order"]

MAX_LEGS = 10
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 60.0
EXCHANGES = frozenset({"NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX"})
DERIVATIVE_EXCHANGES = frozenset({"NFO", "BFO", "CDS", "BCD", "MCX"})
TRANSACTION_TYPES = frozenset({"BUY", "SELL"})
ORDER_TYPES = frozenset({"MARKET", "LIMIT", "SL", "SL-M"})
PRODUCTS = frozenset({"NRML", "MIS", "CNC"})
VALIDITIES = frozenset({"DAY", "IOC"})
EXECUTIONS = frozenset({"parallel", "hedge_first"})
_LEG_KEYS = frozenset({
    "tradingsymbol", "exchange", "transaction_type", "quantity", "order_type", "product",
    "price", "trigger_price", "validity", "variety", "market_protection", "tag",
})
_BATCH_KEYS = frozenset({"orders", "rollback_on_failure", "execution", "timeout_s"})

Lookup = Callable[[str, str], InstrumentInfo | None]


@attrs.frozen
class BatchSpec:
    legs: tuple[OrderRequest, ...]  # validated; orderdesk adds the tag when it places them
    rollback_on_failure: bool = True
    execution: str = "parallel"
    timeout_s: float = DEFAULT_TIMEOUT_S
    # Why the coordinator runs it otherwise than asked (a `parallel` basket that fits only
    # hedged runs hedge-first); None: as asked.
    execution_reason: str | None = None


def validate_batch(
    body: Any,
    lookup: Lookup,
    *,
    session: TradingCalendar | None = None,
    now: dt.datetime | None = None,
    max_timeout_s: float = MAX_TIMEOUT_S,
    contracts: Contracts | None = None,
) -> BatchSpec:
    """The batch body as a `BatchSpec`, or InvalidRequest naming every problem.

    `session`: the trading calendar each leg's exchange must be open in at `now` (None:
    always open, as the paper venue is by default). `contracts`: the master's current
    contracts, named when a symbol is an expired one."""
    errors: list[FieldError] = []
    if not isinstance(body, dict):
        raise InvalidRequest([FieldError("", "type", "the body must be a JSON object")])
    for key in sorted(set(body) - _BATCH_KEYS):
        errors.append(FieldError(key, "unknown_field", f"unknown field {key!r}"))
    orders = body.get("orders")
    legs: list[OrderRequest] = []
    if orders is None:
        errors.append(FieldError("orders", "required", "orders is required"))
    elif not isinstance(orders, list):
        errors.append(FieldError("orders", "type", "orders must be a list"))
    elif not 1 <= len(orders) <= MAX_LEGS:
        errors.append(FieldError("orders", "count", f"a batch has 1 to {MAX_LEGS} orders"))
    else:
        for n, order in enumerate(orders):
            leg = _check_leg(order, f"orders[{n}].", Master(lookup, contracts, now), errors)
            _check_session(session, now, order, f"orders[{n}].", errors)
            if leg is not None:
                legs.append(leg)
    rollback = body.get("rollback_on_failure", True)
    if not isinstance(rollback, bool):
        errors.append(FieldError("rollback_on_failure", "type", "must be true or false"))
    execution = body.get("execution", "parallel")
    if execution not in EXECUTIONS:
        errors.append(FieldError("execution", "enum", "must be 'parallel' or 'hedge_first'"))
    timeout_s = body.get("timeout_s", DEFAULT_TIMEOUT_S)
    if not _is_number(timeout_s) or not 0 < timeout_s <= max_timeout_s:
        errors.append(
            FieldError("timeout_s", "range", f"must be a number above 0, at most {max_timeout_s:g}")
        )
    if errors:
        raise InvalidRequest(errors)
    return BatchSpec(tuple(legs), rollback, execution, float(timeout_s))


def validate_order(
    body: Any,
    lookup: Lookup,
    *,
    session: TradingCalendar | None = None,
    now: dt.datetime | None = None,
    contracts: Contracts | None = None,
) -> OrderRequest:
    """One order body (`POST /orders`) with the same rules as a batch leg."""
    errors: list[FieldError] = []
    leg = _check_leg(body, "", Master(lookup, contracts, now), errors)
    _check_session(session, now, body, "", errors)
    if errors or leg is None:
        raise InvalidRequest(errors)
    return leg


def _check_session(
    calendar: TradingCalendar | None, now: dt.datetime | None, order: Any, prefix: str,
    errors: list[FieldError],
) -> None:
    """The order's exchange must be open now (a bad exchange is reported by _check_leg)."""
    exchange = order.get("exchange") if isinstance(order, dict) else None
    if calendar is None or exchange not in EXCHANGES:
        return
    closed = calendar.closed(exchange, now or dt.datetime.now(IST))
    if closed is not None:
        errors.append(FieldError(prefix + "exchange", closed.rule, closed.message))


@attrs.frozen
class Master:
    """What a leg is checked against: the instrument master, and (to explain an unknown
    symbol) its current contracts as of `now`."""

    lookup: Lookup
    contracts: Contracts | None = None
    now: dt.datetime | None = None

    def unknown(self, exchange: str, symbol: str) -> FieldError:
        """The error of a symbol not in the master: `expired_instrument` (naming the current
        contracts) when it names an expired contract, else `unknown_instrument`."""
        if self.contracts is not None:
            today = (self.now or dt.datetime.now(IST)).astimezone(IST).date()
            expired = expired_message(exchange, symbol, today, self.contracts)
            if expired is not None:
                return FieldError("tradingsymbol", "expired_instrument", expired)
        return FieldError("tradingsymbol", "unknown_instrument",
                          f"{exchange}:{symbol} is not a known instrument")


def lot_message(quantity: int, lot_size: int, freeze_quantity: int | None) -> str:
    """Why `quantity` is refused, with the valid quantities on either side of it (within the
    freeze quantity): nothing is rounded for the client."""
    lots = quantity // lot_size
    options = [n * lot_size for n in (lots, lots + 1) if n >= 1
               and (freeze_quantity is None or n * lot_size <= freeze_quantity)]
    text = f"quantity {quantity} is not a multiple of the lot size {lot_size}"
    if not options:
        return text
    named = [f"{q} ({q // lot_size} lot{'s' if q // lot_size > 1 else ''})" for q in options]
    return f"{text}: use {' or '.join(named)}"


def _check_leg(
    order: Any, prefix: str, master: Master, errors: list[FieldError]
) -> OrderRequest | None:
    if not isinstance(order, dict):
        errors.append(FieldError(prefix.rstrip(".") or "", "type", "an order must be an object"))
        return None
    before = len(errors)

    def err(field: str, rule: str, message: str) -> None:
        errors.append(FieldError(prefix + field, rule, message))

    if "tag" in order:
        err("tag", "forbidden", "orderdesk sets the tags; leave tag out")
    for key in sorted(set(order) - _LEG_KEYS):
        err(key, "unknown_field", f"unknown field {key!r}")
    symbol = order.get("tradingsymbol")
    if not isinstance(symbol, str) or not symbol.strip():
        err("tradingsymbol", "required", "tradingsymbol is required")
        symbol = None
    exchange = _enum(order, "exchange", EXCHANGES, err)
    side = _enum(order, "transaction_type", TRANSACTION_TYPES, err)
    order_type = _enum(order, "order_type", ORDER_TYPES, err)
    product = _enum(order, "product", PRODUCTS, err)
    validity = _enum(order, "validity", VALIDITIES, err, default="DAY")
    if order.get("variety", "regular") != "regular":
        err("variety", "enum", "only the regular variety is supported")
    if product == "CNC" and exchange in DERIVATIVE_EXCHANGES:
        err("product", "product_segment", "CNC is for equity delivery; use NRML or MIS")

    quantity = order.get("quantity")
    if quantity is None:
        err("quantity", "required", "quantity is required")
        quantity = None
    elif not _is_whole(quantity):
        err("quantity", "type", "quantity must be a whole number")
        quantity = None
    elif quantity <= 0:
        err("quantity", "positive", "quantity must be above 0")
        quantity = None
    else:
        quantity = int(quantity)

    info = master.lookup(exchange, symbol) if exchange and symbol else None
    if exchange and symbol and info is None:
        unknown = master.unknown(exchange, symbol.strip())
        err(unknown.path, unknown.rule, unknown.message)
    if info is not None and quantity is not None:
        if quantity % info.lot_size:
            err("quantity", "lot_multiple",
                lot_message(quantity, info.lot_size, info.freeze_quantity))
        if info.freeze_quantity is not None and quantity > info.freeze_quantity:
            err("quantity", "freeze_limit",
                f"quantity above the freeze quantity ({info.freeze_quantity})")

    price = _price(order, "price", err)
    trigger = _price(order, "trigger_price", err)
    tick = info.tick_size if info is not None else None
    _check_prices(order_type, side, price, trigger, tick, err)
    protection = order.get("market_protection")
    if protection is not None:
        if not _is_number(protection) or not (protection == -1 or 0 < protection <= 100):
            err("market_protection", "range", "use -1 (automatic) or a percentage 1 to 100")
            protection = None
        elif order_type not in ("MARKET", "SL-M"):
            err("market_protection", "not_allowed", "only for MARKET and SL-M orders")
    if len(errors) > before:
        return None
    assert symbol and exchange and side and order_type and product and validity and quantity
    return OrderRequest(
        tradingsymbol=symbol.strip(),
        exchange=exchange,
        transaction_type=side,
        order_type=order_type,
        quantity=quantity,
        product=product,
        price=price,
        trigger_price=trigger,
        validity=validity,
        market_protection=None if protection is None else float(protection),
    )


def _check_prices(
    order_type: str | None,
    side: str | None,
    price: float | None,
    trigger: float | None,
    tick: float | None,
    err: Callable[[str, str, str], None],
) -> None:
    needs_price = order_type in ("LIMIT", "SL")
    needs_trigger = order_type in ("SL", "SL-M")
    if order_type is None:
        return
    if needs_price and not price:
        err("price", "required", f"{order_type} orders need a price above 0")
    if not needs_price and price:
        err("price", "not_allowed", f"{order_type} orders take no price")
    if needs_trigger and not trigger:
        err("trigger_price", "required", f"{order_type} orders need a trigger_price above 0")
    if not needs_trigger and trigger:
        err("trigger_price", "not_allowed", f"{order_type} orders take no trigger_price")
    for field, value in (("price", price), ("trigger_price", trigger)):
        if value and tick and not _on_tick(value, tick):
            err(field, "tick", f"{field} must be a multiple of the tick ({tick:g})")
    if order_type == "SL" and price and trigger and side:
        if side == "BUY" and trigger > price:
            err("trigger_price", "trigger_side", "a BUY SL trigger must not be above the price")
        if side == "SELL" and trigger < price:
            err("trigger_price", "trigger_side", "a SELL SL trigger must not be below the price")


def _enum(
    order: Mapping[str, Any],
    field: str,
    allowed: frozenset[str],
    err: Callable[[str, str, str], None],
    default: str | None = None,
) -> str | None:
    value = order.get(field, default)
    if value is None:
        err(field, "required", f"{field} is required")
        return None
    if value not in allowed:
        err(field, "enum", f"{field} must be one of {', '.join(sorted(allowed))}")
        return None
    return str(value)


def _price(
    order: Mapping[str, Any], field: str, err: Callable[[str, str, str], None]
) -> float | None:
    value = order.get(field)
    if value is None:
        return None
    if not _is_number(value) or value < 0:
        err(field, "type", f"{field} must be a number, 0 or above")
        return None
    return float(value) or None


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )


def _is_whole(value: Any) -> bool:
    return _is_number(value) and float(value).is_integer()


def _on_tick(value: float, tick: float) -> bool:
    steps = value / tick
    return abs(steps - round(steps)) < 1e-6
