"""Reverse orders that go through where MARKET does not: `ReverseMarket`.

On Kite a MARKET order is refused on stock options and on contracts with no trades ("Try
placing a LIMIT order"), a LIMIT far from the last price is refused as beyond the circuit
limits, and a MARKET order with market protection becomes a LIMIT at its band edge that can
stay OPEN. So a reverse that must get out is, after a refused MARKET, a marketable LIMIT: the
LTP plus (BUY) or minus (SELL) a few ticks, never further than `limit_band_pct` from it; and a
reverse still working after `reprice_interval_s` is re-priced by modify toward the market, a few
ticks further each time, at most `modify_limit_per_order` times (Kite refuses the 26th). A
reverse larger than the freeze quantity goes out in slices.
"""

from __future__ import annotations

import logging
import math
from functools import partial

import attrs
import trio

from brokers.base import BrokerError, Order, OrderRequest

from ..account import AccountActor
from ..budget import OrderBudget
from ..instruments import InstrumentCache, InstrumentInfo
from ..ratelimit import Priority
from .config import BatchConfig
from .legs import Leg
from .placing import OrderOps

log = logging.getLogger("actors.batch")

DEFAULT_TICK = 0.05


def limit_price(side: str, ltp: float, tick: float, ticks: int, band_pct: float) -> float:
    """`ticks` ticks through `ltp` on `side`, at most `band_pct` percent away, on the tick."""
    inside = math.floor(ltp * band_pct / 100 / tick + 1e-9)
    steps = max(0, min(ticks, inside))
    price = ltp + steps * tick if side == "BUY" else ltp - steps * tick
    return round(max(round(price / tick) * tick, tick), 2)


class ReverseMarket:
    """What a reverse order needs of its market: slices, marketable prices, re-pricing."""

    def __init__(
        self, actor: AccountActor, limiter: OrderBudget, instruments: InstrumentCache | None,
        config: BatchConfig,
    ) -> None:
        self._actor = actor
        self.limiter = limiter
        self._instruments = instruments
        self._config = config

    async def slice_size(self, request: OrderRequest) -> int:
        """The largest order the exchange takes for `request`'s instrument: its freeze quantity
        in whole lots (any size when the instrument master cannot tell)."""
        info = await self._info(request)
        if info is None or not info.freeze_quantity:
            return request.quantity
        return max(info.lot_size, info.freeze_quantity // info.lot_size * info.lot_size)

    async def as_limit(self, request: OrderRequest, ticks: int) -> OrderRequest:
        """`request` as a marketable LIMIT `ticks` through the LTP (BrokerError: no LTP)."""
        price = await self._price(request, ticks)
        return attrs.evolve(request, order_type="LIMIT", price=price, market_protection=None)

    async def chase(
        self, ops: OrderOps, reverse: Leg, updates: trio.MemoryReceiveChannel[Order],
        until: float,
    ) -> None:
        """Follow a working reverse until it is final or `until`; each `reprice_interval_s` it
        is still working, modify it into a LIMIT further through the LTP (a protected MARKET
        resting at its band edge becomes one), until `modify_limit_per_order` is used up."""
        config = self._config
        ticks = config.limit_offset_ticks
        if reverse.request.order_type == "MARKET":
            ticks = 0  # a MARKET that rests: first a LIMIT at the offset
        while not reverse.is_final and trio.current_time() < until:
            await ops.follow(self._actor, reverse, updates,
                             min(until, trio.current_time() + config.reprice_interval_s))
            if (reverse.is_final or trio.current_time() >= until or reverse.order_id is None
                    or reverse.modifications >= config.modify_limit_per_order):
                continue
            ticks += config.limit_offset_ticks
            try:
                price = await self._price(reverse.request, ticks)
            except BrokerError as exc:
                log.warning("reverse %s: no price to re-price it at: %s", reverse.tag, exc)
                continue
            if reverse.request.order_type == "LIMIT" and reverse.request.price == price:
                continue  # at the edge of the band already, and the LTP has not moved
            await self._modify(ops, reverse, price, until)

    async def _modify(self, ops: OrderOps, reverse: Leg, price: float, until: float) -> None:
        assert reverse.order_id is not None
        reverse.modifications += 1  # counted when asked: an unknown outcome may have applied
        modify = partial(self._actor.broker.modify, variety=reverse.request.variety,
                         order_type="LIMIT", price=price)
        try:
            await ops.write(self.limiter, Priority.ROLLBACK, modify, reverse.order_id,
                            account=self._actor.account, deadline=until)
        except BrokerError as exc:  # filled or cancelled meanwhile, refused: following tells
            log.info("re-pricing reverse %s (order %s) at %s: %s", reverse.tag,
                     reverse.order_id, price, exc)
            return
        reverse.request = attrs.evolve(reverse.request, order_type="LIMIT", price=price,
                                       market_protection=None)
        log.info("reverse %s (order %s) re-priced at %s (modification %d)", reverse.tag,
                 reverse.order_id, price, reverse.modifications)

    async def _price(self, request: OrderRequest, ticks: int) -> float:
        key = f"{request.exchange}:{request.tradingsymbol}"
        try:
            with trio.fail_after(self._config.lookup_timeout_s):
                prices = await self._actor.broker.ltp([key])
        except trio.TooSlowError as exc:
            raise BrokerError(f"GET /quote/ltp for {key} timed out") from exc
        if key not in prices:
            raise BrokerError(f"the broker has no last price for {key}")
        info = await self._info(request)
        tick = info.tick_size if info is not None else DEFAULT_TICK
        return limit_price(request.transaction_type, prices[key], tick, ticks,
                           self._config.limit_band_pct)

    async def _info(self, request: OrderRequest) -> InstrumentInfo | None:
        if self._instruments is None:
            return None
        try:
            await self._instruments.load([request.exchange])
        except BrokerError as exc:
            log.warning("instrument master of %s: %s", request.exchange, exc)
        return self._instruments.get(request.exchange, request.tradingsymbol)
