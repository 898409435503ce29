"""The Broker interface: what orderdesk needs from any Kite-compatible venue.

Everything here is plain attrs data; the wire format stays inside the adapter (brokers/kite.py).
Errors are typed so that callers decide on class, never on message text: a rejection is final,
a rate limit means "not placed, try again", and an unavailable broker means the outcome of a
write is *unknown* and must be looked up (by tag) before anything is re-sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import attrs

FINAL_STATUSES = frozenset({"COMPLETE", "CANCELLED", "REJECTED"})
EVENT_ONLY_STATUSES = frozenset({"UPDATE"})


def stays_final(status: object) -> bool:
    """THE final-status rule: an order whose status is final takes no later update (the
    account's book drops it, a batch leg ignores it). A venue may deliver a stale OPEN after
    the COMPLETE, and what is done at the exchange never comes undone."""
    return status in FINAL_STATUSES


@attrs.frozen
class OrderRequest:
    """A new order, in Kite's vocabulary (quantity in units, a multiple of the lot)."""

    tradingsymbol: str
    exchange: str
    transaction_type: str
    order_type: str
    quantity: int
    product: str
    price: float | None = None
    trigger_price: float | None = None
    validity: str = "DAY"
    tag: str | None = None
    market_protection: float | None = None
    variety: str = "regular"

    def form(self) -> dict[str, str]:
        """The form body Kite expects; absent optional fields are left out."""
        fields = attrs.asdict(self)
        return {key: _form_value(value) for key, value in fields.items() if value is not None}


def _form_value(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@attrs.frozen
class Order:
    """One state of one order as the broker reports it (REST listing or ticker push).

    `status` may be the event-only "UPDATE" on a push; `raw` keeps every field Kite sent, so
    subscribers see the broker's own payload.
    """

    order_id: str
    status: str
    tradingsymbol: str = ""
    exchange: str = ""
    transaction_type: str = ""
    order_type: str = ""
    product: str = ""
    variety: str = "regular"
    validity: str = "DAY"
    quantity: int = 0
    price: float = 0.0
    trigger_price: float = 0.0
    average_price: float = 0.0
    filled_quantity: int = 0
    pending_quantity: int = 0
    cancelled_quantity: int = 0
    tag: str | None = None
    status_message: str | None = None
    exchange_order_id: str | None = None
    order_timestamp: str | None = None
    exchange_timestamp: str | None = None
    exchange_update_timestamp: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def is_final(self) -> bool:
        return stays_final(self.status)


@attrs.frozen
class Position:
    """Net position in one instrument and product; quantity is signed (short < 0)."""

    tradingsymbol: str
    exchange: str
    product: str
    quantity: int
    average_price: float = 0.0
    last_price: float = 0.0
    pnl: float = 0.0
    # What P&L is computed from (Kite's `positions.json`; absent fields keep these defaults).
    instrument_token: int = 0
    multiplier: float = 1.0
    close_price: float = 0.0
    overnight_quantity: int = 0
    # bought and sold, the overnight quantity included (values: units x price x multiplier)
    buy_quantity: int = 0
    buy_value: float = 0.0
    sell_quantity: int = 0
    sell_value: float = 0.0
    # today's part alone; None where the broker does not say
    day_buy_quantity: int | None = None
    day_buy_value: float | None = None
    day_sell_quantity: int | None = None
    day_sell_value: float | None = None


@attrs.frozen
class Instrument:
    """One row of Kite's instrument master (CSV); freeze quantity is not in Kite's dump."""

    instrument_token: int
    tradingsymbol: str
    exchange: str
    name: str = ""
    last_price: float = 0.0
    expiry: str = ""
    strike: float = 0.0
    tick_size: float = 0.05
    lot_size: int = 1
    instrument_type: str = ""
    segment: str = ""


@attrs.frozen
class BasketMargin:
    """Margin a basket needs (`initial`: legs alone, `final`: with hedge benefit) and funds."""

    initial: float
    final: float
    available: float | None = None


class BrokerError(Exception):
    """Base of every error a broker call raises."""

    def __init__(self, message: str, *, error_type: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.error_type = error_type
        self.status = status


class OrderRejected(BrokerError):
    """The broker refused the request (bad input, margin, order state): final, not retried."""


class TokenExpired(BrokerError):
    """The access token is invalid or expired (TokenException): wait for new credentials."""


class RateLimited(BrokerError):
    """429: the request was not processed; retry after a pause."""


class BrokerUnavailable(BrokerError):
    """Timeout, connection failure or 5xx: the outcome of a write is unknown."""


class UpstreamLost(BrokerError):
    """The order stream closed or went silent; reconnect and reconcile."""


class OrderStream(Protocol):
    """Order updates from one live upstream connection; iteration ends by UpstreamLost."""

    @property
    def last_frame_at(self) -> float | None:
        """trio.current_time() of the last frame of any kind (heartbeats too), None before the
        first: the handshake alone proves nothing (a stalled ticker accepts and stays mute)."""
        ...

    def __aiter__(self) -> AsyncIterator[Order]: ...


class Broker(Protocol):
    """What an account actor and the batch coordinator need from a venue."""

    async def place(self, request: OrderRequest) -> str: ...

    async def modify(self, order_id: str, *, variety: str = "regular", **changes: Any) -> str: ...

    async def cancel(self, order_id: str, *, variety: str = "regular") -> str: ...

    async def orders(self, *, max_age_s: float = 0.0) -> list[Order]: ...

    async def order_history(self, order_id: str) -> list[Order]: ...

    async def positions(self) -> list[Position]: ...

    async def basket_margins(self, requests: Sequence[OrderRequest]) -> BasketMargin: ...

    async def instruments(self, exchange: str | None = None) -> list[Instrument]: ...

    async def ltp(self, instruments: Sequence[str]) -> dict[str, float]:
        """Last prices by "EXCHANGE:SYMBOL" (Kite's `GET /quote/ltp`)."""
        ...

    def open_stream(self) -> AbstractAsyncContextManager[OrderStream]: ...

    def parse_order(self, payload: dict[str, Any]) -> Order:
        """An order payload as this venue spells it (the account's book keeps those) as an
        `Order`: the actors never parse a venue's wire format themselves."""
        ...

    async def aclose(self) -> None: ...
