"""An account's margin on the venue: its net positions and working orders margined as one
portfolio, hedges included (Kite's RMS does so: an order that hedges the positions blocks less).
The formulas are in `margins`; this module gathers the legs from the engine's live state."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from . import margins
from .book import LIVE_STATES, Order, Position
from .changes import PositionKey
from .instruments import Instrument, InstrumentMaster
from .orderform import OrderRequest
from .prices import PriceBook


class Margining:
    """Reads the engine's own maps of working orders and positions (never copies them): a
    placement's margin never looks at the day's finished orders."""

    def __init__(
        self, funds: float, master: InstrumentMaster, prices: PriceBook,
        orders: Mapping[str, Order], positions: Mapping[PositionKey, Position],
    ) -> None:
        self._funds, self._master, self._prices = funds, master, prices
        self._orders, self._positions = orders, positions

    @property
    def scan_size(self) -> int:
        """Orders a placement's margin looks at (of every account): the working ones."""
        return len(self._orders)

    def used(self, account: str) -> margins.MarginParts:
        return margins.hedged_total(self._portfolio(account))

    def available(self, account: str) -> float:
        return self._funds - self.used(account).total

    def order_margin(self, order: Order) -> float:
        """What placing `order` adds to its account's margin (less than its own when it hedges)."""
        held = self._portfolio(order.account)
        after = margins.hedged_total([*held, self._order_leg(order)])
        return after.total - margins.hedged_total(held).total

    def basket(
        self, account: str, legs: Iterable[OrderRequest],
        instrument_of: Callable[[str, str], Instrument],
        *, consider_positions: bool = False,
    ) -> dict[str, Any]:
        """`instrument_of(exchange, tradingsymbol)` resolves a leg or refuses it as Kite does."""
        resolved, opening = [], []
        for req in legs:
            i = instrument_of(req.exchange, req.tradingsymbol)
            ltp = self._prices.ltp(i)
            price = req.price if req.order_type in ("LIMIT", "SL") and req.price else ltp
            resolved.append(self._leg(i, req.transaction_type, req.quantity, price, req.product))
            if consider_positions:
                opens = self._opening(account, i, req.product, req.transaction_type, req.quantity)
                opening.append(attrs.evolve(resolved[-1], quantity=opens))
        if not consider_positions:
            return margins.basket(resolved)
        return margins.basket(resolved, held=self._portfolio(account), opening=opening)

    def _leg(
        self, i: Instrument, side: str, quantity: int, price: float, product: str
    ) -> margins.Leg:
        underlying = i.strike
        if i.is_option:
            future = self._master.front_future(i.name)
            underlying = self._prices.ltp(future) if future is not None else i.strike
        return margins.Leg(i, side, quantity, price, product, underlying)

    def _portfolio(self, account: str) -> list[margins.Leg]:
        """What the account's margin is computed on: net positions and working orders."""
        legs = []
        for p in self._positions.values():
            if p.account == account and p.net:
                side = "BUY" if p.net > 0 else "SELL"
                legs.append(self._leg(p.instrument, side, abs(p.net), p.average_price, p.product))
        legs.extend(self._order_leg(o) for o in self._orders.values()
                    if o.account == account and o.status in LIVE_STATES)
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
        price = order.price or self._prices.ltp(order.instrument)
        return self._leg(order.instrument, order.transaction_type, opens, price, order.product)
