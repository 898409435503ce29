"""The venue's records: orders (with their status history) and positions, in Kite's shapes."""

from __future__ import annotations

import hashlib
from typing import Any

import attrs

from .instruments import Instrument

OPEN = "OPEN"
TRIGGER_PENDING = "TRIGGER PENDING"
COMPLETE = "COMPLETE"
CANCELLED = "CANCELLED"
REJECTED = "REJECTED"
UPDATE = "UPDATE"
MODIFIED = "MODIFIED"
LIVE_STATES = frozenset({OPEN, TRIGGER_PENDING})
FINAL_STATES = frozenset({COMPLETE, CANCELLED, REJECTED})
#: Statuses Kite pushes on the ticker (not the bare placement's PUT ORDER REQ RECEIVED, ...).
PUSHED = frozenset({OPEN, TRIGGER_PENDING, UPDATE, COMPLETE, CANCELLED, REJECTED, MODIFIED})

APP_ID = 1


def _num(value: float) -> float:
    return round(value, 2)


@attrs.define(eq=False)
class Order:
    account: str
    instrument: Instrument
    order_id: str
    order_timestamp: str
    variety: str
    order_type: str
    transaction_type: str
    validity: str
    product: str
    quantity: int
    price: float
    trigger_price: float
    market_protection: float
    tag: str | None
    disclosed_quantity: int = 0
    status: str = "PUT ORDER REQ RECEIVED"
    status_message: str | None = None
    status_message_raw: str | None = None
    exchange_order_id: str | None = None
    exchange_timestamp: str | None = None
    exchange_update_timestamp: str | None = None
    modified: bool = False
    average_price: float = 0.0
    filled_quantity: int = 0
    cancelled_quantity: int = 0
    fills: int = 0
    hold_remainder: bool = False  # a partial fill's remainder waits for a price event
    rests_at_edge: bool = False  # a protected MARKET resting at its band edge (liquidity.py)
    history: list[str] = attrs.field(factory=list)  # each state as JSON text (listing.py)

    @property
    def pending_quantity(self) -> int:
        if self.status in (CANCELLED, REJECTED):
            return 0
        return self.quantity - self.filled_quantity

    @property
    def signed(self) -> int:
        return 1 if self.transaction_type == "BUY" else -1

    def to_kite(self, status: str | None = None) -> dict[str, Any]:
        """The order as `GET /orders` shows it (key order of Kite's `orders.json`)."""
        i = self.instrument
        return {
            "placed_by": self.account,
            "order_id": self.order_id,
            "exchange_order_id": self.exchange_order_id,
            "parent_order_id": None,
            "status": status or self.status,
            "status_message": self.status_message,
            "status_message_raw": self.status_message_raw,
            "order_timestamp": self.order_timestamp,
            "exchange_update_timestamp": self.exchange_update_timestamp,
            "exchange_timestamp": self.exchange_timestamp,
            "variety": self.variety,
            "modified": self.modified,
            "exchange": i.exchange,
            "tradingsymbol": i.tradingsymbol,
            "instrument_token": i.instrument_token,
            "order_type": self.order_type,
            "transaction_type": self.transaction_type,
            "validity": self.validity,
            "validity_ttl": 0,
            "product": self.product,
            "quantity": self.quantity,
            "disclosed_quantity": self.disclosed_quantity,
            "price": self.price,
            "trigger_price": self.trigger_price,
            "average_price": _num(self.average_price),
            "filled_quantity": self.filled_quantity,
            "pending_quantity": self.pending_quantity,
            "cancelled_quantity": self.cancelled_quantity,
            "market_protection": self.market_protection,
            "meta": {},
            "tag": self.tag,
            "tags": [self.tag] if self.tag else [],
            "guid": hashlib.sha1(f"{self.account}/{self.order_id}".encode()).hexdigest()[:16],
        }


def postback(order: dict[str, Any], api_secret: str = "paper") -> dict[str, Any]:
    """An order dict with the extra fields of a Kite postback / ticker order message."""
    checksum = hashlib.sha256(
        f"{order['order_id']}{order['order_timestamp']}{api_secret}".encode()
    ).hexdigest()
    return {
        "user_id": order["placed_by"],
        "unfilled_quantity": order["pending_quantity"],
        "app_id": APP_ID,
        "checksum": checksum,
        **order,
    }


@attrs.define
class Position:
    account: str
    instrument: Instrument
    product: str
    close_price: float
    buy_quantity: int = 0
    buy_value: float = 0.0
    sell_quantity: int = 0
    sell_value: float = 0.0

    @property
    def net(self) -> int:
        return self.buy_quantity - self.sell_quantity

    @property
    def buy_price(self) -> float:
        return self.buy_value / self.buy_quantity if self.buy_quantity else 0.0

    @property
    def sell_price(self) -> float:
        return self.sell_value / self.sell_quantity if self.sell_quantity else 0.0

    @property
    def average_price(self) -> float:
        if self.net > 0:
            return self.buy_price
        if self.net < 0:
            return self.sell_price
        return 0.0

    def add_fill(self, side: str, quantity: int, price: float) -> None:
        if side == "BUY":
            self.buy_quantity += quantity
            self.buy_value += quantity * price
        else:
            self.sell_quantity += quantity
            self.sell_value += quantity * price

    def to_kite(self, ltp: float) -> dict[str, Any]:
        """One row of `GET /portfolio/positions` (fields of Kite's `positions.json`)."""
        i, net = self.instrument, self.net
        value = self.sell_value - self.buy_value
        pnl = value + net * ltp
        unrealised = net * (ltp - self.average_price)
        return {
            "tradingsymbol": i.tradingsymbol,
            "exchange": i.exchange,
            "instrument_token": i.instrument_token,
            "product": self.product,
            "quantity": net,
            "overnight_quantity": 0,
            "multiplier": 1,
            "average_price": _num(self.average_price),
            "close_price": self.close_price,
            "last_price": ltp,
            "value": _num(value),
            "pnl": _num(pnl),
            "m2m": _num(pnl),
            "unrealised": _num(unrealised),
            "realised": _num(pnl - unrealised),
            "buy_quantity": self.buy_quantity,
            "buy_price": _num(self.buy_price),
            "buy_value": _num(self.buy_value),
            "buy_m2m": _num(self.buy_value),
            "sell_quantity": self.sell_quantity,
            "sell_price": _num(self.sell_price),
            "sell_value": _num(self.sell_value),
            "sell_m2m": _num(self.sell_value),
            "day_buy_quantity": self.buy_quantity,
            "day_buy_price": _num(self.buy_price),
            "day_buy_value": _num(self.buy_value),
            "day_sell_quantity": self.sell_quantity,
            "day_sell_price": _num(self.sell_price),
            "day_sell_value": _num(self.sell_value),
        }
