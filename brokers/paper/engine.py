"""Matching engine: the Kite order state machine, fills, positions and funds.

Every method except `run` is synchronous and has no await point, so each request is applied
atomically in the Trio thread and the ticker frames it produces are published in order.

Matching rules:

- MARKET (and a triggered SL-M) fills at the LTP right after OPEN.
- LIMIT (and a triggered SL) BUY fills when LTP <= price, SELL when LTP >= price. Checked at
  placement and modification (fill at the LTP) and at every price event: a simulation step,
  `POST /_venue/step`, `POST /_venue/ltp` (fill at the order's limit price).
- SL / SL-M wait in TRIGGER PENDING until the LTP crosses the trigger (BUY: LTP >= trigger,
  SELL: LTP <= trigger), then go OPEN (pushed) and behave as LIMIT / MARKET.
- IOC orders not filled at placement are cancelled. TTL is treated as DAY.
- Faults (`faults.py`) may delay or split fills; a modification is not margin-checked again.
- Kite's refusals on thin contracts (MARKET refused, price band, protected MARKET resting at its
  band edge, cancels refused while "being processed") and the limit of 25 modifications per
  order are in `liquidity.py`; the refusals of an order's own fields in `order_checks.py`, the
  session hours in `session.py`.

Margins over the account's positions and orders are `margining.py`'s; what changed for the state
keeper, `changes.py`'s.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import trio

from . import liquidity, margins
from .book import (
    CANCELLED,
    COMPLETE,
    LIVE_STATES,
    MODIFIED,
    OPEN,
    PUSHED,
    REJECTED,
    TRIGGER_PENDING,
    UPDATE,
    Order,
    Position,
)
from .changes import ChangeLog, Changes, PositionKey
from .config import IST, VenueConfig
from .errors import VenueError, input_error
from .faults import Faults
from .ids import OrderIds
from .instruments import Instrument, InstrumentMaster
from .listing import OrderListing
from .margining import Margining
from .order_checks import check_order, check_protection
from .orderform import ModifyRequest, OrderRequest
from .prices import PriceBook
from .session import Session

Publish = Callable[[str, Order, str], None]  # account, order, status pushed

def timestamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(IST)).strftime("%Y-%m-%d %H:%M:%S")


class Engine:
    def __init__(
        self, config: VenueConfig, master: InstrumentMaster, faults: Faults, publish: Publish
    ) -> None:
        self.config, self.master, self.faults = config, master, faults
        self.prices = PriceBook(master, config.seed)
        self.session = Session(config.session_open, config.session_close)
        self._publish = publish
        self._orders: dict[str, Order] = {}
        self._working: dict[str, Order] = {}  # price scan, margins: OPEN, TRIGGER PENDING
        self.listing = OrderListing()  # GET /orders
        self._positions: dict[PositionKey, Position] = {}
        self.margining = Margining(config.funds, master, self.prices, self._working,
                                   self._positions)
        self.ids = OrderIds()
        self._timer_seq = 0
        self.changes = ChangeLog()
        self._timers: list[tuple[float, int, str]] = []
        self._wake = trio.Event()
        self._touched: dict[str, float] = {}  # order id -> trio time of placement / last modify

    # ---- the clock: price steps and delayed fills -------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        next_step = trio.current_time() + self.config.tick_interval_s
        task_status.started()
        while True:
            deadline = min(next_step, self._timers[0][0] if self._timers else math.inf)
            with trio.move_on_at(deadline):
                await self._wake.wait()
            self._wake = trio.Event()
            now = trio.current_time()
            while self._timers and self._timers[0][0] <= now:
                _, _, order_id = heapq.heappop(self._timers)
                self._match(self._orders[order_id], "timer")
            if now >= next_step:
                self.step_prices()
                next_step = now + self.config.tick_interval_s

    def reset(self) -> None:
        self._orders.clear()
        self._working.clear()
        self.listing.clear()
        self._positions.clear()
        self._timers.clear()
        self._touched.clear()
        self.prices.reset()
        self.session = Session(self.config.session_open, self.config.session_close)
        self.changes.reset()

    # ---- state kept across restarts (state.py saves and loads it) ---------------------------

    @property
    def version(self) -> int:
        return self.changes.version

    async def wait_changed(self) -> None:
        await self.changes.wait()

    def take_changes(self) -> Changes:
        return self.changes.take(self._orders, self._positions)

    def all_orders(self) -> list[Order]:
        return list(self._orders.values())

    def all_positions(self) -> list[Position]:
        return list(self._positions.values())

    def restore(self, orders: Iterable[Order], positions: Iterable[Position], last_id: int) -> None:
        """Orders and positions of an earlier run; its ids are never handed out again."""
        self.ids.seen(last_id)
        for order in orders:
            self.ids.seen(order.order_id)
            self._add(order)
            if order.status in LIVE_STATES:
                self._working[order.order_id] = order
        for position in positions:
            self._positions[(position.account, position.instrument.key, position.product)] = (
                position)

    # ---- prices -------------------------------------------------------------------------------

    @property
    def price_scan_size(self) -> int:
        """Orders a price event looks at: the working ones, never the day's finished ones."""
        return len(self._working)

    def step_prices(self) -> None:
        self.prices.step()
        self._match_all(self._working.values())

    def set_prices(self, prices: Mapping[Instrument, float]) -> None:
        for instrument, price in prices.items():
            self.prices.set(instrument, price)
        touched = set(prices)
        self._match_all(o for o in self._working.values() if o.instrument in touched)

    def ltp(self, instrument: Instrument) -> float:
        return self.prices.ltp(instrument)

    # ---- orders -------------------------------------------------------------------------------

    def place(self, account: str, req: OrderRequest) -> str:
        instrument = self.instrument(req.exchange, req.tradingsymbol)
        self.session.check()
        check_order(instrument, req.order_type, req.transaction_type, req.quantity,
                    req.price, req.trigger_price, req.product)
        check_protection(self.config.require_market_protection, req.order_type,
                         req.market_protection)
        liquidity.check_market(self.faults, instrument, req.order_type)
        liquidity.check_band(self.faults, self.ltp(instrument), req.order_type, req.price)
        now = dt.datetime.now(IST)
        order = Order(
            account=account, instrument=instrument, order_id=self.ids.next(now),
            order_timestamp=timestamp(now), variety=req.variety, order_type=req.order_type,
            transaction_type=req.transaction_type, validity=req.validity, product=req.product,
            quantity=req.quantity,
            price=req.price if req.order_type in ("LIMIT", "SL") else 0.0,
            trigger_price=req.trigger_price if req.order_type in ("SL", "SL-M") else 0.0,
            market_protection=req.market_protection, tag=req.tag,
            disclosed_quantity=req.disclosed_quantity,
        )
        self._add(order)
        self._touched[order.order_id] = trio.current_time()
        self._rest_if_protected(order)
        self._record(order, "PUT ORDER REQ RECEIVED")
        self._record(order, "VALIDATION PENDING")
        if self.faults.rejects(instrument.exchange, instrument.tradingsymbol):
            self._reject(order, "Order rejected by the paper venue (fault: reject_symbols).",
                         "RMS:Rule: paper venue reject_symbols fault")
            return order.order_id
        required, available = self.margining.order_margin(order), self.available(account)
        if required > available + 1e-9:  # the portfolio's margin after it exceeds the funds
            self._reject(
                order,
                f"Insufficient funds. Required margin is {required:.2f} but available margin is "
                f"{available:.2f}. Check the orderbook for open orders.",
                f"RMS:Margin Exceeds,Required:{required:.2f}, Available:{available:.2f} for "
                f"entity account-{account} across exchange across segment across product ",
            )
            return order.order_id
        self._record(order, "OPEN PENDING")
        order.exchange_order_id = f"13{int(order.order_id) % 10**14:014d}"
        order.exchange_timestamp = order.exchange_update_timestamp = timestamp()
        self._record(order, TRIGGER_PENDING if order.order_type in ("SL", "SL-M") else OPEN)
        self._match(order, "placement")
        if order.validity == "IOC" and order.status in LIVE_STATES and not self._delayed(order):
            self._cancel(order)
        return order.order_id

    def modify(self, account: str, order_id: str, req: ModifyRequest) -> str:
        order = self._live_order(account, order_id, "modified")
        self.session.check()
        liquidity.check_modifications(order.history)
        order_type = req.order_type or order.order_type
        quantity = req.quantity if req.quantity is not None else order.quantity
        price = req.price if req.price is not None else order.price
        trigger = req.trigger_price if req.trigger_price is not None else order.trigger_price
        price = price if order_type in ("LIMIT", "SL") else 0.0
        trigger = trigger if order_type in ("SL", "SL-M") else 0.0
        check_order(order.instrument, order_type, order.transaction_type, quantity, price,
                    trigger, order.product)
        if quantity <= order.filled_quantity:
            raise input_error("Quantity should be more than the filled quantity.")
        protection = req.market_protection
        protection = order.market_protection if protection is None else protection
        check_protection(self.config.require_market_protection, order_type, protection)
        liquidity.check_market(self.faults, order.instrument, order_type)
        liquidity.check_band(self.faults, self.ltp(order.instrument), order_type, price)
        was_waiting = order.status == TRIGGER_PENDING or order.order_type not in ("SL", "SL-M")
        self._record(order, "MODIFY VALIDATION PENDING")
        self._record(order, "MODIFY PENDING")
        order.order_type, order.quantity, order.price, order.trigger_price = (
            order_type, quantity, price, trigger)
        order.market_protection = protection
        if req.validity:
            order.validity = req.validity
        if req.disclosed_quantity is not None:
            order.disclosed_quantity = req.disclosed_quantity
        order.modified = True
        self._touched[order.order_id] = trio.current_time()
        self._rest_if_protected(order)
        order.exchange_update_timestamp = timestamp()
        self._record(order, MODIFIED)
        stop = order.order_type in ("SL", "SL-M")
        live = TRIGGER_PENDING if stop and was_waiting and not order.fills else OPEN
        self._record(order, live)
        self._match(order, "placement")
        return order.order_id

    def cancel(self, account: str, order_id: str) -> str:
        order = self._live_order(account, order_id, "cancelled")
        liquidity.check_cancel(self.faults, self._touched.get(order_id), trio.current_time())
        self._cancel(order)
        return order.order_id

    def fill_remainder(self, order_id: str) -> Order:
        order = self._orders.get(order_id)
        if order is None:
            raise VenueError(404, "GeneralException", "No such order.")
        if order.status not in LIVE_STATES:
            raise input_error(f"Order is {order.status}, nothing to fill.")
        self._match(order, "manual")
        return order

    def orders(self, account: str) -> list[Order]:
        return self.listing.orders(account)

    def order(self, account: str, order_id: str) -> Order:
        order = self._orders.get(order_id)
        if order is None or order.account != account:
            raise input_error("Couldn't find that `order_id`.")
        return order

    def instrument(self, exchange: str, tradingsymbol: str) -> Instrument:
        instrument = self.master.get(exchange, tradingsymbol)
        if instrument is None:
            raise input_error(
                "The instrument you are placing an order for has either expired or does not "
                "exist."
            )
        return instrument

    # ---- positions and margins ----------------------------------------------------------------

    def positions(self, account: str) -> list[Position]:
        return [p for p in self._positions.values() if p.account == account]

    def used_margin(self, account: str) -> margins.MarginParts:
        """Positions and working orders margined as one portfolio, hedges included."""
        return self.margining.used(account)

    def available(self, account: str) -> float:
        return self.margining.available(account)

    def basket_margins(
        self, account: str, legs: Iterable[OrderRequest], *, consider_positions: bool = False
    ) -> dict[str, Any]:
        return self.margining.basket(account, legs, self.instrument,
                                     consider_positions=consider_positions)

    # ---- internals ----------------------------------------------------------------------------

    def _live_order(self, account: str, order_id: str, verb: str) -> Order:
        order = self.order(account, order_id)
        if order.status not in LIVE_STATES:
            raise input_error(f"Order cannot be {verb} as it is {order.status.lower()}.")
        return order

    def _add(self, order: Order) -> None:
        self._orders[order.order_id] = order
        self.listing.add(order)

    def _record(self, order: Order, status: str) -> None:
        if status not in (UPDATE, MODIFIED):
            order.status = status
            if status in LIVE_STATES:
                self._working[order.order_id] = order
            else:
                self._working.pop(order.order_id, None)
        snapshot = order.to_kite(status if status == MODIFIED else None)
        order.history.append(self.listing.recorded(order.order_id, snapshot, status != MODIFIED))
        self.changes.order(order.order_id)
        if status in PUSHED:
            self._publish(order.account, order, status)

    def _reject(self, order: Order, message: str, raw: str) -> None:
        order.status_message, order.status_message_raw = message, raw
        self._record(order, REJECTED)

    def _cancel(self, order: Order) -> None:
        self._record(order, "CANCEL PENDING")
        order.cancelled_quantity = order.quantity - order.filled_quantity
        order.hold_remainder = False
        order.exchange_update_timestamp = timestamp()
        self._record(order, CANCELLED)

    def _rest_if_protected(self, order: Order) -> None:
        """`rest_protected_market`: a protected MARKET order becomes a LIMIT at its band edge."""
        edge = None
        if order.order_type == "MARKET":
            edge = liquidity.resting_price(self.faults, order.instrument, order.transaction_type,
                                           self.ltp(order.instrument), order.market_protection)
        order.rests_at_edge = edge is not None
        if edge is not None:
            order.price = edge

    def _delayed(self, order: Order) -> bool:
        return any(order_id == order.order_id for _, _, order_id in self._timers)

    def _match_all(self, orders: Iterable[Order]) -> None:
        for order in [o for o in orders if o.status in LIVE_STATES]:
            self._match(order, "price")

    def _match(self, order: Order, event: str) -> None:
        """event: placement | timer | price | manual."""
        ltp = self.ltp(order.instrument)
        buy = order.transaction_type == "BUY"
        if order.status == TRIGGER_PENDING:
            if not (ltp >= order.trigger_price if buy else ltp <= order.trigger_price):
                return
            order.exchange_update_timestamp = timestamp()
            self._record(order, OPEN)
        if order.status != OPEN or (order.hold_remainder and event in ("placement", "timer")):
            return
        if event == "price" and self._delayed(order):
            return  # fill_delay_ms holds it until its timer, whatever the price does meanwhile
        limit = order.order_type in ("LIMIT", "SL")
        if limit and event != "manual" and not (ltp <= order.price if buy else ltp >= order.price):
            return
        if (order.rests_at_edge and event != "manual"
                and not liquidity.reached(order.transaction_type, ltp, order.price)):
            return
        if event == "placement" and self.faults.fill_delay_ms:
            self._schedule(order, self.faults.fill_delay_ms / 1000)
            return
        at_limit = (limit or order.rests_at_edge) and event in ("price", "manual")
        price = order.price if at_limit else ltp
        remaining = order.quantity - order.filled_quantity
        quantity = remaining
        ratio = self.faults.partial_fill_ratio
        if order.fills == 0 and ratio > 0:
            lot = order.instrument.lot_size
            quantity = min(remaining, max(lot, int(remaining * ratio) // lot * lot))
        self._fill(order, quantity, price)

    def _schedule(self, order: Order, delay: float) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers,
                       (trio.current_time() + delay, self._timer_seq, order.order_id))
        self._wake.set()

    def _fill(self, order: Order, quantity: int, price: float) -> None:
        filled = order.filled_quantity + quantity
        order.average_price = (order.average_price * order.filled_quantity
                               + price * quantity) / filled
        order.filled_quantity, order.fills = filled, order.fills + 1
        order.exchange_update_timestamp = timestamp()
        key = (order.account, order.instrument.key, order.product)
        position = self._positions.get(key)
        if position is None:
            position = Position(order.account, order.instrument, order.product,
                                close_price=self.prices.close(order.instrument))
            self._positions[key] = position
        position.add_fill(order.transaction_type, quantity, price)
        self.changes.position(key)
        if filled >= order.quantity:
            order.hold_remainder = False
            self._record(order, COMPLETE)
        else:
            order.hold_remainder = True
            self._record(order, UPDATE)
