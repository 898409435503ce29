"""Validation of batch and single-order bodies, before anything is sent to the broker.

Every problem is collected (not just the first) and reported by field path (`orders[2].quantity`)
with a machine-readable rule, so a client fixes a basket in one round trip. The shape rules
(types, required fields, enumerations) are the web front's converter's (`web/shapes.py`): these
are the rules of typed requests that need the instrument master, the trading calendar or the
prices; the margin check is the broker's.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Any, get_args

import attrs

from brokers.base import Order, OrderRequest

from ..calendar import IST, TradingCalendar
from ..errors import FieldError, InvalidRequest, MalformedRequest
from ..instruments import InstrumentInfo
from ..requests import (
    DEFAULT_TIMEOUT_S,
    MAX_TIMEOUT_S,
    BatchRequest,
    Exchange,
    LegRequest,
    ModifyRequest,
)
from ..symbols import Contracts, expired_message

__all__ = ["IST", "BatchSpec", "FieldError", "InvalidRequest", "TradingCalendar",
           "OrderChange", "freeze_message", "validate_batch", "validate_modify",
           "validate_order"]

EXCHANGES = frozenset(get_args(Exchange))
DERIVATIVE_EXCHANGES = frozenset({"NFO", "BFO", "CDS", "BCD", "MCX"})
#: Where each top-level field's problems come in an answer (unknown fields first).
_BODY_ORDER = {a.name: n for n, a in enumerate(attrs.fields(BatchRequest), 1)}
_LEG_INDEX = re.compile(r"orders\[(\d+)\]")

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
    request: BatchRequest | MalformedRequest,
    lookup: Lookup,
    *,
    session: TradingCalendar | None = None,
    now: dt.datetime | None = None,
    max_timeout_s: float = MAX_TIMEOUT_S,
    contracts: Contracts | None = None,
) -> BatchSpec:
    """The batch as a `BatchSpec`, or InvalidRequest naming every problem: the shape problems
    of a malformed body with the master's problems of its well-formed orders.

    `session`: the trading calendar each leg's exchange must be open in at `now` (None:
    always open, as the paper venue is by default). `contracts`: the master's current
    contracts, named when a symbol is an expired one."""
    master = Master(lookup, contracts, now)
    malformed = isinstance(request, MalformedRequest)
    errors = list(request.fields) if malformed else []
    orders = request.orders if malformed else tuple(enumerate(request.orders))
    legs = [_check_leg(leg, f"orders[{n}].", master, session, errors) for n, leg in orders]
    if not malformed and request.timeout_s > max_timeout_s:
        errors.append(
            FieldError("timeout_s", "range", f"must be a number above 0, at most {max_timeout_s:g}")
        )
    if errors or malformed:
        raise InvalidRequest(sorted(errors, key=_body_order))
    return BatchSpec(tuple(leg for leg in legs if leg is not None), request.rollback_on_failure,
                     request.execution, request.timeout_s)


def validate_order(
    request: LegRequest | MalformedRequest,
    lookup: Lookup,
    *,
    session: TradingCalendar | None = None,
    now: dt.datetime | None = None,
    contracts: Contracts | None = None,
) -> OrderRequest:
    """One order (`POST /orders`) with the same rules as a batch leg."""
    if isinstance(request, MalformedRequest):
        raise InvalidRequest(list(request.fields))
    errors: list[FieldError] = []
    leg = _check_leg(request, "", Master(lookup, contracts, now), session, errors)
    if errors or leg is None:
        raise InvalidRequest(errors)
    return leg


def validate_modify(
    request: ModifyRequest | MalformedRequest, order: Order, lookup: Lookup
) -> OrderChange:
    """The order as it would stand once modified, or InvalidRequest naming every problem: the
    rules of a new order (lot, freeze, tick, prices by order type) on the fields that result,
    and more than what has filled already."""
    if isinstance(request, MalformedRequest):
        raise InvalidRequest(list(request.fields))
    errors: list[FieldError] = []

    def err(field: str, rule: str, message: str) -> None:
        errors.append(FieldError(field, rule, message))

    asked = [a.name for a in attrs.fields(ModifyRequest) if getattr(request, a.name) is not None]
    if not asked:
        raise InvalidRequest([FieldError("", "required", "give at least one of " + ", ".join(
            a.name for a in attrs.fields(ModifyRequest)))])
    order_type = request.order_type or order.order_type
    quantity = order.quantity if request.quantity is None else request.quantity
    keep_price = order_type in ("LIMIT", "SL") and request.price is None
    price = _price(order.price if keep_price else request.price, "price", err)
    keep_trigger = order_type in ("SL", "SL-M") and request.trigger_price is None
    trigger = _price(order.trigger_price if keep_trigger else request.trigger_price,
                     "trigger_price", err)
    info = lookup(order.exchange, order.tradingsymbol)
    if info is not None and quantity % info.lot_size:
        err("quantity", "lot_multiple", lot_message(quantity, info.lot_size, info.freeze_quantity))
    elif info is not None and info.freeze_quantity is not None and quantity > info.freeze_quantity:
        err("quantity", "freeze_limit",
            freeze_message(quantity, info.lot_size, info.freeze_quantity))
    if quantity <= order.filled_quantity:
        err("quantity", "range", f"must be above the {order.filled_quantity} already filled")
    _check_prices(order_type, order.transaction_type, price, trigger,
                  info.tick_size if info is not None else None, err)
    if errors:
        raise InvalidRequest(errors)
    return OrderChange(quantity, order_type, price, trigger)


@attrs.frozen
class OrderChange:
    """A validated modification: the order's fields as the broker is asked to set them."""

    quantity: int
    order_type: str
    price: float | None
    trigger_price: float | None

    def form(self) -> dict[str, Any]:
        """Kite's modify fields (a price of 0 clears one the new order type takes none of)."""
        return {"quantity": self.quantity, "order_type": self.order_type,
                "price": self.price or 0, "trigger_price": self.trigger_price or 0}


def _body_order(error: FieldError) -> tuple[int, int]:
    """Where a batch's problem comes in the answer: by top-level field, legs by index."""
    index = _LEG_INDEX.match(error.path)
    return (_BODY_ORDER.get(re.split(r"[.\[]", error.path, maxsplit=1)[0], 0),
            int(index.group(1)) if index else -1)


def _check_session(
    calendar: TradingCalendar | None, now: dt.datetime | None, exchange: str, prefix: str,
    errors: list[FieldError],
) -> None:
    """The order's exchange must be open now."""
    if calendar is None:
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


def freeze_message(quantity: int, lot_size: int, freeze_quantity: int) -> str:
    """Why `quantity` is refused above the freeze, in lots (as a trader counts), and how many
    orders within the freeze would carry it."""
    max_lots = max(1, freeze_quantity // lot_size)
    lots = quantity / lot_size
    orders = -(-quantity // (max_lots * lot_size))
    return (f"quantity {quantity} ({lots:g} lots) is above the freeze limit of {freeze_quantity} "
            f"({max_lots} lots): split it into {orders} orders of at most {max_lots} lots")


def _check_leg(
    order: LegRequest, prefix: str, master: Master, session: TradingCalendar | None,
    errors: list[FieldError],
) -> OrderRequest | None:
    """The master's, the calendar's and the price rules' problems of a well-formed order."""
    before = len(errors)

    def err(field: str, rule: str, message: str) -> None:
        errors.append(FieldError(prefix + field, rule, message))

    exchange, symbol, quantity = order.exchange, order.tradingsymbol, order.quantity
    if order.product == "CNC" and exchange in DERIVATIVE_EXCHANGES:
        err("product", "product_segment", "CNC is for equity delivery; use NRML or MIS")
    info = master.lookup(exchange, symbol)
    if info is None:
        unknown = master.unknown(exchange, symbol.strip())
        err(unknown.path, unknown.rule, unknown.message)
    else:
        if quantity % info.lot_size:
            err("quantity", "lot_multiple",
                lot_message(quantity, info.lot_size, info.freeze_quantity))
        if info.freeze_quantity is not None and quantity > info.freeze_quantity:
            err("quantity", "freeze_limit",
                freeze_message(quantity, info.lot_size, info.freeze_quantity))

    price = _price(order.price, "price", err)
    trigger = _price(order.trigger_price, "trigger_price", err)
    tick = info.tick_size if info is not None else None
    _check_prices(order.order_type, order.transaction_type, price, trigger, tick, err)
    protection = order.market_protection
    if protection is not None and order.order_type not in ("MARKET", "SL-M"):
        err("market_protection", "not_allowed", "only for MARKET and SL-M orders")
    _check_session(session, master.now, exchange, prefix, errors)
    if len(errors) > before:
        return None
    return OrderRequest(
        tradingsymbol=symbol.strip(),
        exchange=exchange,
        transaction_type=order.transaction_type,
        order_type=order.order_type,
        quantity=quantity,
        product=order.product,
        price=price,
        trigger_price=trigger,
        validity=order.validity,
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


def _price(value: float | None, field: str, err: Callable[[str, str, str], None]) -> float | None:
    """A price as placed: None when absent or 0; a negative one is a problem."""
    if value is None:
        return None
    if value < 0:
        err(field, "type", f"{field} must be a number, 0 or above")
        return None
    return float(value) or None


def _on_tick(value: float, tick: float) -> bool:
    steps = value / tick
    return abs(steps - round(steps)) < 1e-6
