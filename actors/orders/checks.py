"""Before a batch is stored: its body validated against the instrument master and the trading
calendar, and its margin checked with the broker (which may run it hedge-first, or refuse it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import attrs
import trio

from brokers.base import BasketMargin, BrokerError, OrderRejected, TokenExpired

from ..errors import AuthExpired, BrokerUnavailable, FieldError, InvalidRequest, MalformedRequest
from ..money import rupees
from ..outcomes import BasketMarginQuote
from ..requests import BatchRequest
from .accounts import AccountContext
from .config import BatchConfig
from .legs import placed_request
from .validation import BatchSpec, validate_batch

__all__ = ["PreTrade"]


class PreTrade:
    """The checks a batch passes before anything is stored or placed."""

    def __init__(self, config: BatchConfig) -> None:
        self._config = config

    async def validate(
        self, ctx: AccountContext, request: BatchRequest | MalformedRequest
    ) -> BatchSpec:
        """The batch body as a spec, checked against the account's instrument master (loaded
        for the exchanges it names) and the trading calendar: InvalidRequest naming every
        problem otherwise; AuthExpired or BrokerUnavailable when the master cannot be read."""
        orders = request.orders if isinstance(request, MalformedRequest) else enumerate(
            request.orders)
        try:
            await ctx.instruments.load(sorted({leg.exchange for _, leg in orders}))
        except TokenExpired as exc:
            raise AuthExpired(ctx.actor.account) from exc
        except BrokerError as exc:
            raise BrokerUnavailable(f"instrument master: {exc}") from exc
        return validate_batch(request, ctx.instruments.get, session=self._config.session,
                              max_timeout_s=self._config.max_timeout_s,
                              contracts=ctx.instruments.contracts)

    async def check_margin(self, ctx: AccountContext, spec: BatchSpec) -> BatchSpec:
        """The batch to run (`spec`, or hedge-first when it fits only hedged), or the refusal."""
        if not self._config.margin_check:
            return spec
        margin, available = await self._margin_and_funds(ctx, spec)
        if available is None:
            return spec
        if margin.final > available + 1e-6:
            message = (f"the basket needs {rupees(margin.final)} margin, {rupees(available)} "
                       "is available")
            raise InvalidRequest([FieldError("orders", "margin", message)])
        if spec.execution == "parallel" and margin.initial > available + 1e-6:
            # Parallel legs reach the broker in any order and each is margined as it arrives:
            # a SELL leg ahead of its hedge would be rejected after the others filled.
            shortfall = (f"the legs need {rupees(margin.initial)} margin when each is priced on "
                         f"its own, {rupees(available)} is available: the basket fits only "
                         f"hedged ({rupees(margin.final)})")
            if self._config.unhedged_parallel == "hedge_first":
                return attrs.evolve(spec, execution="hedge_first", execution_reason=(
                    f"{shortfall}; run hedge-first: the SELL legs are sent only once every "
                    "BUY leg is COMPLETE, so they get the hedge benefit"))
            message = (f"{shortfall}; use execution \"hedge_first\" so the BUY legs fill first "
                       "and the SELL legs get the hedge benefit")
            raise InvalidRequest([FieldError("execution", "margin", message)])
        return spec


    async def quote(self, ctx: AccountContext, spec: BatchSpec) -> BasketMarginQuote:
        """The margin the basket needs against the funds available, and its net premium at
        last prices: read only, whether or not the margin check is on."""
        margin, available = await self._margin_and_funds(ctx, spec)
        short_by = None if available is None else round(max(0.0, margin.final - available), 2)
        return BasketMarginQuote(
            required=round(margin.final, 2), available=available,
            fits=None if short_by is None else short_by == 0.0, short_by=short_by,
            net_premium=await _net_premium(ctx, spec))

    async def _margin_and_funds(
        self, ctx: AccountContext, spec: BatchSpec
    ) -> tuple[BasketMargin, float | None]:
        """The broker's basket margin and the funds available, asked at once (a batch waits
        one round trip for its margin check, not two); broker errors as the API's."""
        requests = [placed_request(leg, None, self._config.market_protection)
                    for leg in spec.legs]
        broker = ctx.actor.broker
        found: dict[str, Any] = {}

        async def ask(name: str, call: Callable[[], Awaitable[Any]]) -> None:
            try:
                found[name] = await call()
            except BrokerError as exc:
                found[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, "margin", partial(broker.basket_margins, requests))
            if hasattr(broker, "available_funds"):
                nursery.start_soon(ask, "funds", broker.available_funds)
        try:
            margin = _raise_or(found["margin"])
            available = margin.available
            if available is None and "funds" in found:
                available = _raise_or(found["funds"])
        except OrderRejected as exc:
            raise InvalidRequest([FieldError("orders", "broker", exc.message)]) from exc
        except TokenExpired as exc:
            raise AuthExpired(ctx.actor.account) from exc
        except BrokerError as exc:
            raise BrokerUnavailable(f"margin check: {exc}") from exc
        return margin, available


async def _net_premium(ctx: AccountContext, spec: BatchSpec) -> float | None:
    """Quantity × last price over the legs, SELL positive; None when a price is unknown."""
    names = sorted({f"{leg.exchange}:{leg.tradingsymbol}" for leg in spec.legs})
    try:
        prices = await ctx.actor.broker.ltp(names)
    except BrokerError:
        return None
    total = 0.0
    for leg in spec.legs:
        price = prices.get(f"{leg.exchange}:{leg.tradingsymbol}")
        if price is None:
            return None
        sign = 1 if leg.transaction_type == "SELL" else -1
        total += sign * leg.quantity * price
    return round(total, 2)

def _raise_or(value: Any) -> Any:
    if isinstance(value, BrokerError):
        raise value
    return value
