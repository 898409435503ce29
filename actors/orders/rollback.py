"""Rollback: THE one way orderdesk undoes orders, for batches, recovery and the kill switch.

`unwind` rolls one leg back: cancel it if open, wait for its final state, then `flatten` the
filled quantity with tagged reverse orders (sliced by the freeze quantity; a marketable LIMIT
re-priced by modify where MARKET is refused or rests: `reverse.py`). `unwind_all` runs a batch's
legs concurrently, one leg's failure never stopping the others'. The kill switch flattens an
account's positions through the same `flatten` (`flatten_position`). Each leg's outcome is its
`rollback` dict: action none / cancelled / flattened / failed, with what is left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import trio

from brokers.base import BrokerError, OrderRejected, OrderRequest, Position

from ..account import AccountActor
from ..budget import OrderBudget
from ..instruments import InstrumentCache
from ..ratelimit import Priority
from .accounts import AccountContext
from .config import BatchConfig
from .fence import LeaseExpiring
from .legs import Leg, reverse_index, reverse_request, reverse_tag
from .placing import OrderOps, UnknownOutcome
from .reverse import ReverseMarket

__all__ = ["Rollback", "cut_short", "failed"]

log = logging.getLogger("actors.batch")  # the coordinator's log, as before the split


class Rollback:
    """Undo legs and positions through `OrderOps`: rate-limited at rollback priority, shielded
    calls, every reverse order tagged and followed to its final state."""

    def __init__(self, ops: OrderOps, config: BatchConfig) -> None:
        self.ops = ops
        self._config = config

    async def unwind_all(
        self, ctx: AccountContext, batch_id: str, legs: list[Leg], deadline: float,
        *, flatten: bool = True,
    ) -> bool:
        """Unwind `legs` concurrently; a leg whose unwind crashed gets a failed rollback.
        True when the fence ([cluster]) kept a reverse order from being sent until the end:
        then the outcome is not this node's to decide (the caller leaves it to recovery)."""
        fenced: list[Leg] = []
        async with trio.open_nursery() as nursery:
            for leg in legs:
                nursery.start_soon(partial(self._unwind_logged, ctx, batch_id, leg, deadline,
                                           fenced, flatten=flatten))
        return bool(fenced)

    async def _unwind_logged(
        self, ctx: AccountContext, batch_id: str, leg: Leg, deadline: float,
        fenced: list[Leg], *, flatten: bool = True,
    ) -> None:
        try:
            if await self.unwind(ctx.actor, ctx.limiter, batch_id, leg, deadline,
                                 flatten=flatten, instruments=ctx.instruments):
                fenced.append(leg)
        except Exception as exc:  # one leg's failure must not stop the others' rollback
            log.exception("rollback of %s failed", leg.tag)
            leg.rollback = cut_short(leg, f"{type(exc).__name__}: {exc}")

    async def flatten_position(
        self, ctx: AccountContext, tag_of: Callable[[int | None], str], n: int,
        position: Position, deadline: float, on_reverse: Callable[[Leg], None],
    ) -> None:
        """Flatten a position (the kill switch's `n`th, or an exit's) as the rollback flattens a
        leg that bought (or sold) it: sliced by the freeze quantity, a marketable LIMIT where
        MARKET is refused, re-priced; its orders tagged `tag_of(attempt)` (`kill_tag` or
        `exit_tag`), `tag_of(None)` naming the position itself."""
        side = "BUY" if position.quantity > 0 else "SELL"
        quantity = abs(position.quantity)
        request = OrderRequest(position.tradingsymbol, position.exchange, side, "MARKET",
                               quantity, position.product)
        held = Leg(n, tag_of(None), request, status="COMPLETE", filled=quantity)
        market = ReverseMarket(ctx.actor, ctx.limiter, ctx.instruments, self._config)
        await self.flatten(ctx.actor, market, None, held, deadline, {},
                           tag_of=tag_of, on_reverse=on_reverse)

    async def unwind(
        self, actor: AccountActor, limiter: OrderBudget, batch_id: str, leg: Leg,
        deadline: float, *, flatten: bool = True, instruments: InstrumentCache | None = None,
    ) -> bool:
        """Roll one leg back: cancel it if open, wait for its final state, then flatten the
        filled quantity with tagged reverse orders. Sets `leg.rollback`; True when the fence
        kept its last reverse from being sent (see `flatten`).

        A leg whose POST had an unknown outcome is watched (its tag: pushes and GET /orders)
        until `deadline - cleanup_grace_s`; found, it is undone like any other, not found, its
        exposure is unknown and the rollback fails naming its tag, never "none". Reverse
        orders are followed until that time too, so that cancelling one still working fits in
        the rollback. `flatten=False` cancels and settles but keeps the filled quantity
        (a hedge kept because the legs it hedges could not be undone). `instruments` gives
        reverse orders their tick size and freeze quantity."""
        # "in_progress" until decided: a rollback cut off by its hard deadline reads as failed.
        rb: dict[str, Any] = {"action": "in_progress", "order_id": None, "status": None,
                              "filled": leg.reversed_qty, "remaining": 0}
        leg.rollback = rb
        follow_until = deadline - self._config.cleanup_grace_s
        with actor.watch(leg.tag) as updates:
            cancelled = await self.ops.settle(actor, limiter, batch_id, leg, updates, deadline,
                                          find_until=follow_until)
        if leg.unknown:
            rb.update(action="failed", remaining=None, unknown_tags=[leg.tag],
                      quantity_at_most=leg.request.quantity,
                      error=f"placing {leg.tag} had an unknown outcome and no order with that "
                            "tag appeared by the rollback deadline: its exposure is unknown "
                            "(none or the whole quantity)")
            await self.ops.save_leg(batch_id, leg)
            return False
        if leg.order_id is None:
            rb["action"] = "none"
            await self.ops.save_leg(batch_id, leg)
            return False
        if not leg.is_final:
            working = [leg.order_id]
            if leg.reverse is not None and leg.reverse.order_id:
                working.append(leg.reverse.order_id)
            rb.update(action="failed", filled=leg.reversed_qty, remaining=leg.exposure,
                      open_order_ids=working,
                      error="the leg is still open at the rollback deadline")
            await self.ops.save_leg(batch_id, leg)
            return False
        if not flatten:
            rb.update(filled=leg.reversed_qty, remaining=leg.exposure)
            if leg.exposure > 0:
                rb.update(action="failed", error="kept: it hedges legs whose rollback failed")
            else:
                rb["action"] = "cancelled" if cancelled else "none"
            await self.ops.save_leg(batch_id, leg)
            return False
        market = ReverseMarket(actor, limiter, instruments, self._config)
        fenced = await self.flatten(actor, market, batch_id, leg, deadline, rb)
        if rb["action"] == "in_progress":
            rb["action"] = "cancelled" if cancelled else "none"
        await self.ops.save_leg(batch_id, leg)
        return fenced

    async def flatten(
        self, actor: AccountActor, market: ReverseMarket, batch_id: str | None, leg: Leg,
        deadline: float, rb: dict[str, Any], *, tag_of: Callable[[int], str] | None = None,
        on_reverse: Callable[[Leg], None] | None = None,
    ) -> bool:
        """Reverse orders until the leg's filled quantity is undone, one at a time, each at
        most the freeze quantity. A reverse is a MARKET order with protection; once one was
        refused at its POST, a marketable LIMIT. A working reverse is followed (and re-priced, see
        `ReverseMarket.chase`) until `deadline - cleanup_grace_s`, then cancelled and settled
        by `deadline`; while one is working (or its POST's outcome is unknown) no other is
        sent, and its fills count as they come (`leg.reverse`), so a rollback cut short still
        names it. Up to `reverse_attempts` reverses may fill nothing.

        The kill switch flattens a position through here (`flatten_position`: a leg that
        filled the position, `batch_id` None: nothing stored), with tags of its own
        (`tag_of(attempt)`); `on_reverse` sees each reverse once it is over.

        [cluster] A reverse the fence refused (`LeaseExpiring`: the lease was not renewed in
        time, or the account is lost) was not sent: it is tried again under the same tag every
        `cancel_retry_s`, a slow renewal being no reason to leave a position open. Returns True
        when the last try was refused too (the caller may not decide the outcome)."""
        limiter = market.limiter
        follow_until = deadline - self._config.cleanup_grace_s
        last: Leg | None = leg.reverse
        if leg.reverse is not None:  # found working (recovery): settle it before anything else
            with actor.watch(leg.reverse.tag) as updates:
                await self.ops.settle(actor, limiter, batch_id, leg.reverse, updates, deadline)
            self._close_reverse(leg)
        failures, as_limit, fenced = 0, False, False
        while (leg.reverse is None and leg.exposure > 0
               and failures < self._config.reverse_attempts
               and trio.current_time() < follow_until):
            attempt = leg.next_attempt
            leg.next_attempt += 1
            tag = tag_of(attempt) if tag_of is not None else reverse_tag(leg.tag, attempt)
            request = reverse_request(leg.request, leg.exposure, tag,
                                      self._config.market_protection)
            request = attrs.evolve(request, quantity=min(leg.exposure,
                                                         await market.slice_size(request)))
            reverse = last = leg.reverse = Leg(reverse_index(leg.index, attempt), tag, request)
            with actor.watch(tag) as updates:
                try:
                    if as_limit:
                        reverse.request = await market.as_limit(
                            request, self._config.limit_offset_ticks)
                    await self.ops.send(actor, limiter, batch_id, reverse, Priority.ROLLBACK,
                                    deadline)
                except OrderRejected as exc:
                    reverse.status, reverse.error = "REJECTED", exc.message
                except LeaseExpiring as exc:  # not sent
                    reverse.status, reverse.error = "NOT_PLACED", str(exc)
                    fenced = True
                    retry_at = trio.current_time() + self._config.cancel_retry_s
                    if retry_at < follow_until:
                        log.info("reverse %s: %s; trying again", tag, exc)
                        leg.reverse, leg.next_attempt = None, attempt
                        await trio.sleep_until(retry_at)
                        continue
                except (UnknownOutcome, BrokerError) as exc:
                    reverse.error = str(exc)
                    if not reverse.sent:
                        reverse.status = "NOT_PLACED"
                else:
                    fenced = False
                if reverse.unknown:  # it may still land: never send another meanwhile
                    await self.ops.find_late(actor, reverse, updates, follow_until)
                rb.update(order_id=reverse.order_id, status=reverse.status)  # the one working
                if reverse.order_id is not None and not reverse.is_final:
                    await market.chase(self.ops, reverse, updates, follow_until)
                    if not reverse.is_final:  # never leave a reverse working unseen
                        await self.ops.cancel_and_settle(actor, limiter, reverse, updates, deadline)
            await self.ops.save_leg(batch_id, reverse)
            if reverse.modifications:  # re-priced: how often (Kite allows 25 per order)
                rb["modifications"] = rb.get("modifications", 0) + reverse.modifications
            if on_reverse is not None:
                on_reverse(reverse)
            self._close_reverse(leg)
            failures += reverse.filled == 0
            if (reverse.status == "REJECTED" and reverse.order_id is None
                    and reverse.request.order_type == "MARKET"):
                # Refused at the POST (no trades, a stock option): a LIMIT from now on. One
                # the broker took and then rejected (margin, RMS) is final, as before.
                as_limit = True
                continue
            if reverse.status == "REJECTED" or reverse.order_id is None:
                break
        self.reverse_outcome(leg, rb, last)
        return fenced

    @staticmethod
    def _close_reverse(leg: Leg) -> None:
        """Count a reverse that is over (final, or never reached the broker)."""
        reverse = leg.reverse
        if reverse is not None and (reverse.is_final or not (reverse.sent or reverse.order_id)):
            leg.reverse_filled += reverse.filled
            leg.reverse = None

    @staticmethod
    def reverse_outcome(leg: Leg, rb: dict[str, Any], last: Leg | None = None) -> None:
        """Decide `rb` from what the reverse orders did: the working one counted and named."""
        last = leg.reverse or last
        rb.update(filled=leg.reversed_qty, remaining=leg.exposure)
        if last is not None:
            rb.update(order_id=last.order_id, status=last.status)
        working = leg.reverse
        if working is not None and working.order_id is None:
            rb.update(action="failed", remaining=None, unknown_tags=[working.tag],
                      quantity_at_most=leg.exposure,
                      error=f"reverse {working.tag} had an unknown outcome and no order with "
                            "that tag appeared by the rollback deadline: the remaining "
                            f"exposure is unknown (at most {leg.exposure})")
        elif working is not None:
            rb.update(action="failed", open_order_ids=[working.order_id],
                      error=f"reverse order {working.order_id} ({working.tag}) is still "
                            f"{working.status} after its cancel, filled {working.filled} of "
                            f"{working.request.quantity}")
        elif leg.exposure > 0:
            rb["action"] = "failed"
            rb["error"] = ((last.error or last.status_message) if last is not None
                           else "no time left to flatten") or f"reverse ended {rb['status']}"
        elif leg.reverse_filled:
            rb["action"] = "flattened"


def failed(leg: Leg) -> bool:
    """Whether the leg's rollback failed (exposure left, or unknown)."""
    return leg.rollback is not None and leg.rollback.get("action") == "failed"


def cut_short(leg: Leg, error: str) -> dict[str, Any]:
    """The rollback of `leg` as far as it got, failed: the reverse still working counted and
    named, an order whose outcome is unknown named by its tag."""
    rb: dict[str, Any] = {"order_id": None, "status": None, **(leg.rollback or {})}
    rb.update(action="failed", filled=leg.reversed_qty, remaining=leg.exposure, error=error)
    working = [o.order_id for o in (leg, leg.reverse)
               if o is not None and o.order_id and not o.is_final]
    unknown = [o.tag for o in (leg, leg.reverse) if o is not None and o.unknown]
    if leg.reverse is not None:
        rb.update(order_id=leg.reverse.order_id, status=leg.reverse.status)
    if working:
        rb["open_order_ids"] = working
    if unknown:
        rb.update(remaining=None, unknown_tags=unknown, quantity_at_most=leg.exposure
                  if leg.order_id else leg.request.quantity)
    return rb
