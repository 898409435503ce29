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
  order are in `liquidity.py`.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
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
from .config import IST, VenueConfig, parse_clock
from .errors import VenueError, input_error
from .faults import Faults
from .ids import OrderIds
from .instruments import Instrument, InstrumentMaster
from .orderform import ModifyRequest, OrderRequest
from .prices import PriceBook

Publish = Callable[[str, Order, str], None]  # account, order, status pushed

CLOSED_MESSAGE = "Markets are closed right now. Use GTT for placing long standing orders instead."
PROTECTION_MESSAGE = (
    "Market orders without market protection are not allowed via API. "
    "Please set market protection or use a Limit order."
)


@attrs.frozen
class Changes:
    """Orders and positions changed up to engine version `version` (live objects: serialise
    them before the next await). `reset`: everything went, save the whole state."""

    version: int
    reset: bool
    orders: list[Order]
    positions: list[Position]


def timestamp(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(IST)).strftime("%Y-%m-%d %H:%M:%S")


def _on_tick(value: float, tick: float) -> bool:
    steps = value / tick
    return math.isclose(steps, round(steps), abs_tol=1e-6)


class Session:
    def __init__(self, open_: str, close: str) -> None:
        self.open, self.close, self.closed = parse_clock(open_), parse_clock(close), False

    def is_open(self, now: dt.time) -> bool:
        return not self.closed and self.open <= now <= self.close

    def public(self) -> dict[str, Any]:
        return {"open": self.open.isoformat(), "close": self.close.isoformat(),
                "closed": self.closed}


class Engine:
    def __init__(
        self, config: VenueConfig, master: InstrumentMaster, faults: Faults, publish: Publish
    ) -> None:
        self.config, self.master, self.faults = config, master, faults
        self.prices = PriceBook(master, config.seed)
        self.session = Session(config.session_open, config.session_close)
        self._publish = publish
        self._orders: dict[str, Order] = {}
        self._positions: dict[tuple[str, str, str], Position] = {}
        self.ids = OrderIds()
        self._timer_seq = 0
        self._changed = trio.Event()
        #: Grows at every change of orders or positions: the state keeper saves up to a version.
        self.version = 0
        self._dirty_orders: set[str] = set()
        self._dirty_positions: set[tuple[str, str, str]] = set()
        self._reset_pending = False
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
        self._positions.clear()
        self._timers.clear()
        self._touched.clear()
        self.prices.reset()
        self.session = Session(self.config.session_open, self.config.session_close)
        self._reset_pending = True
        self._touch()

    # ---- state kept across restarts (state.py saves and loads it) ---------------------------

    async def wait_changed(self) -> None:
        """Return once orders or positions changed since the last call returned."""
        await self._changed.wait()
        self._changed = trio.Event()

    def take_changes(self) -> Changes:
        """What changed since the last call (a reset: everything), as of `version`."""
        changes = Changes(
            self.version, self._reset_pending,
            [self._orders[i] for i in sorted(self._dirty_orders) if i in self._orders],
            [self._positions[k] for k in sorted(self._dirty_positions) if k in self._positions],
        )
        self._dirty_orders, self._dirty_positions, self._reset_pending = set(), set(), False
        return changes

    def _touch(self) -> None:
        self.version += 1
        self._changed.set()

    def all_orders(self) -> list[Order]:
        return list(self._orders.values())

    def all_positions(self) -> list[Position]:
        return list(self._positions.values())

    def restore(self, orders: Iterable[Order], positions: Iterable[Position], last_id: int) -> None:
        """Orders and positions of an earlier run; its ids are never handed out again."""
        self.ids.seen(last_id)
        for order in orders:
            self.ids.seen(order.order_id)
            self._orders[order.order_id] = order
        for position in positions:
            self._positions[(position.account, position.instrument.key, position.product)] = (
                position)

    # ---- prices -------------------------------------------------------------------------------

    def step_prices(self) -> None:
        self.prices.step()
        self._match_all(self._orders.values())

    def set_prices(self, prices: Mapping[Instrument, float]) -> None:
        for instrument, price in prices.items():
            self.prices.set(instrument, price)
        touched = set(prices)
        self._match_all(o for o in self._orders.values() if o.instrument in touched)

    def ltp(self, instrument: Instrument) -> float:
        return self.prices.ltp(instrument)

    # ---- orders -------------------------------------------------------------------------------

    def place(self, account: str, req: OrderRequest) -> str:
        instrument = self.instrument(req.exchange, req.tradingsymbol)
        self._check_session()
        self._check_order(instrument, req.order_type, req.transaction_type, req.quantity,
                          req.price, req.trigger_price, req.product)
        if (self.config.require_market_protection and req.order_type in ("MARKET", "SL-M")
                and req.market_protection == 0):
            raise input_error(PROTECTION_MESSAGE)
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
        self._orders[order.order_id] = order
        self._touched[order.order_id] = trio.current_time()
        self._rest_if_protected(order)
        self._record(order, "PUT ORDER REQ RECEIVED")
        self._record(order, "VALIDATION PENDING")
        if self.faults.rejects(instrument.exchange, instrument.tradingsymbol):
            self._reject(order, "Order rejected by the paper venue (fault: reject_symbols).",
                         "RMS:Rule: paper venue reject_symbols fault")
            return order.order_id
        required, available = self._order_margin(order), self.available(account)
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
        self._check_session()
        liquidity.check_modifications(order.history)
        order_type = req.order_type or order.order_type
        quantity = req.quantity if req.quantity is not None else order.quantity
        price = req.price if req.price is not None else order.price
        trigger = req.trigger_price if req.trigger_price is not None else order.trigger_price
        price = price if order_type in ("LIMIT", "SL") else 0.0
        trigger = trigger if order_type in ("SL", "SL-M") else 0.0
        self._check_order(order.instrument, order_type, order.transaction_type, quantity, price,
                          trigger, order.product)
        if quantity <= order.filled_quantity:
            raise input_error("Quantity should be more than the filled quantity.")
        protection = req.market_protection
        protection = order.market_protection if protection is None else protection
        if (self.config.require_market_protection and order_type in ("MARKET", "SL-M")
                and protection == 0):
            raise input_error(PROTECTION_MESSAGE)
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
        return [o for o in self._orders.values() if o.account == account]

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
        """Positions and working orders margined as one portfolio, hedges included (Kite's RMS
        does so: an order that hedges the positions blocks less, see `margins`)."""
        return margins.hedged_total(self._portfolio(account))

    def available(self, account: str) -> float:
        return self.config.funds - self.used_margin(account).total

    def basket_margins(
        self, account: str, legs: Iterable[OrderRequest], *, consider_positions: bool = False
    ) -> dict[str, Any]:
        resolved, opening = [], []
        for req in legs:
            i = self.instrument(req.exchange, req.tradingsymbol)
            price = req.price if req.order_type in ("LIMIT", "SL") and req.price else self.ltp(i)
            resolved.append(self._leg(i, req.transaction_type, req.quantity, price, req.product))
            if consider_positions:
                opens = self._opening(account, i, req.product, req.transaction_type, req.quantity)
                opening.append(attrs.evolve(resolved[-1], quantity=opens))
        if not consider_positions:
            return margins.basket(resolved)
        return margins.basket(resolved, held=self._portfolio(account), opening=opening)

    # ---- internals ----------------------------------------------------------------------------

    def _leg(
        self, i: Instrument, side: str, quantity: int, price: float, product: str
    ) -> margins.Leg:
        underlying = i.strike
        if i.is_option:
            future = self.master.front_future(i.name)
            underlying = self.ltp(future) if future is not None else i.strike
        return margins.Leg(i, side, quantity, price, product, underlying)

    def _portfolio(self, account: str) -> list[margins.Leg]:
        """What the account's margin is computed on: net positions and working orders."""
        legs = []
        for p in self.positions(account):
            if p.net:
                side = "BUY" if p.net > 0 else "SELL"
                legs.append(self._leg(p.instrument, side, abs(p.net), p.average_price, p.product))
        legs.extend(self._order_leg(o) for o in self.orders(account) if o.status in LIVE_STATES)
        return legs

    def _opening(
        self, account: str, i: Instrument, product: str, side: str, quantity: int
    ) -> int:
        """The part of `quantity` that opens beyond the position it closes (that part is free)."""
        position = self._positions.get((account, i.key, product))
        net = position.net if position else 0
        signed = 1 if side == "BUY" else -1
        return quantity - (min(quantity, abs(net)) if net * signed < 0 else 0)

    def _order_leg(self, order: Order) -> margins.Leg:
        pending = order.quantity - order.filled_quantity
        opens = self._opening(order.account, order.instrument, order.product,
                              order.transaction_type, pending)
        price = order.price or self.ltp(order.instrument)
        return self._leg(order.instrument, order.transaction_type, opens, price, order.product)

    def _order_margin(self, order: Order) -> float:
        """What placing `order` adds to its account's margin (less than its own when it hedges)."""
        held = self._portfolio(order.account)
        after = margins.hedged_total([*held, self._order_leg(order)])
        return after.total - margins.hedged_total(held).total

    def _check_session(self) -> None:
        if not self.session.is_open(dt.datetime.now(IST).time().replace(microsecond=0)):
            raise input_error(CLOSED_MESSAGE)

    def _check_order(
        self, i: Instrument, order_type: str, side: str, quantity: int, price: float,
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
            if value and not _on_tick(value, i.tick_size):
                raise input_error(
                    f"Tick size for this script is {i.tick_size:.2f}. Kindly enter price in the "
                    "multiple of tick size for this script"
                )
        if order_type == "SL" and (trigger - price) * (1 if side == "BUY" else -1) > 0:
            raise input_error(
                "Trigger price for stoploss buy orders should be lower than the limit price, "
                "and for sell orders higher."
            )

    def _live_order(self, account: str, order_id: str, verb: str) -> Order:
        order = self.order(account, order_id)
        if order.status not in LIVE_STATES:
            raise input_error(f"Order cannot be {verb} as it is {order.status.lower()}.")
        return order

    def _record(self, order: Order, status: str) -> None:
        if status not in (UPDATE, MODIFIED):
            order.status = status
        snapshot = order.to_kite(status if status == MODIFIED else None)
        order.history.append(snapshot)
        self._dirty_orders.add(order.order_id)
        self._touch()
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
        self._dirty_positions.add(key)
        if filled >= order.quantity:
            order.hold_remainder = False
            self._record(order, COMPLETE)
        else:
            order.hold_remainder = True
            self._record(order, UPDATE)
