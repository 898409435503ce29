"""The order primitives of batches, rollbacks and the kill switch: `Leg` and `OrderOps`.

Placing is never blind: each place call takes a rate-limit token, then runs shielded with its own
timeout; a call that timed out or failed with a 5xx is an unknown outcome, resolved by looking its
tag up (`GET /orders`), never by re-posting. Following an order absorbs pushes and polls when they
are silent. Undoing one (`unwind`) cancels it if open, waits for its final state and flattens the
filled quantity with tagged reverse orders (sliced by the freeze quantity; a marketable LIMIT
re-priced by modify where MARKET is refused or rests: `_reverse.py`). A cancel the broker
refuses while the order is still working ("being processed") is retried until the deadline.
"""

from __future__ import annotations

import base64
import copy
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import attrs
import trio

from brokers.base import (
    EVENT_ONLY_STATUSES,
    FINAL_STATUSES,
    BrokerError,
    BrokerUnavailable,
    Order,
    OrderRejected,
    OrderRequest,
    RateLimited,
)
from brokers.kite import parse_order
from store import LegRecord, NotFound, Store, StoreError

from ._config import BatchConfig
from ._reverse import ReverseMarket
from ._writes import StoreWrites, Write
from .account import AccountActor
from .budget import OrderBudget
from .instruments import InstrumentCache
from .ratelimit import Priority

log = logging.getLogger("actors.batch")  # the coordinator's log, as before the split

# Stored leg states that say no POST of the leg went out.
NOT_SENT = frozenset({"PENDING", "NOT_PLACED"})

T = TypeVar("T")


class UnknownOutcome(Exception):
    """A place call may have reached the broker, and no order with its tag was found."""


def new_batch_id() -> str:
    """10 characters of lowercase base32 (50 random bits): short enough for Kite's tags."""
    return base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]


def tag_for(batch_id: str, index: int, kind: str, attempt: int) -> str:
    """`od` + batch id + leg number + L (leg) / R (reverse) / S (single) + retry digit."""
    return f"od{batch_id}{index}{kind}{attempt}"


def reverse_tag(leg_tag: str, attempt: int) -> str:
    """The tag of a leg's `attempt`th reverse order: derived from the leg's own tag, so recovery
    finds a reverse at the broker by its tag even when its row was never stored."""
    return f"{reverse_prefix(leg_tag)}{attempt}"


def reverse_prefix(leg_tag: str) -> str:
    """What every reverse tag of a leg starts with (legs are numbered 0..9: one digit)."""
    return f"{leg_tag[:-2]}R"


def reverse_index(leg_index: int, attempt: int) -> int:
    """The stored index of a reverse order: 100 x (attempt + 1) + the leg's index."""
    return 100 * (attempt + 1) + leg_index


def reverse_request(
    request: OrderRequest, quantity: int, tag: str | None, protection: float
) -> OrderRequest:
    """The order that undoes `quantity` of `request`: opposite side, MARKET with protection."""
    side = "SELL" if request.transaction_type == "BUY" else "BUY"
    return OrderRequest(request.tradingsymbol, request.exchange, side, "MARKET", quantity,
                        request.product, tag=tag, market_protection=protection)


@attrs.define(eq=False)
class Leg:
    """One order of a batch (or a reverse order) as the coordinator knows it; one owner task."""

    index: int
    tag: str
    request: OrderRequest
    order_id: str | None = None
    status: str = "PENDING"  # PENDING, PLACING, PLACED, UNKNOWN, NOT_PLACED or Kite's status
    filled: int = 0
    average_price: float = 0.0
    error: str | None = None
    status_message: str | None = None
    sent: bool = False  # a POST may have reached the broker (set once its token is granted)
    rollback: dict[str, Any] | None = None
    reverse_filled: int = 0  # filled by reverse orders that are over (final)
    next_attempt: int = 0
    modifications: int = 0  # modify calls asked for this order (re-pricing a reverse)
    # The reverse order of this leg now working (or whose outcome is unknown); its fills count
    # towards the reversed quantity until it is final and added to `reverse_filled`.
    reverse: Leg | None = None

    @classmethod
    def from_record(cls, record: LegRecord) -> Leg:
        leg = cls(record.index, record.tag, OrderRequest(**record.request), record.order_id)
        detail = record.detail or {}
        if record.status in FINAL_STATUSES and record.order_id is None:
            leg.status = record.status  # refused when posted: never reached the book
        else:
            # The broker's listing is the truth after a crash: a stored final state is re-read.
            leg.status = "PLACED" if record.status in FINAL_STATUSES else record.status
            leg.sent = record.status not in NOT_SENT
        leg.filled = int(detail.get("filled_quantity") or 0)
        leg.average_price = float(detail.get("average_price") or 0.0)
        leg.error = detail.get("error")
        leg.status_message = detail.get("status_message")
        leg.rollback = detail.get("rollback")
        leg.modifications = int(detail.get("modifications") or 0)
        return leg

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_reverse(self) -> bool:
        return self.index >= 100

    @property
    def complete(self) -> bool:
        return self.status == "COMPLETE" and self.filled >= self.request.quantity

    @property
    def unknown(self) -> bool:
        """Sent, and no order with its tag found (yet): it may still land at the broker."""
        return self.sent and self.order_id is None and not self.is_final

    @property
    def reversed_qty(self) -> int:
        """Filled by reverse orders, the one still working included."""
        return self.reverse_filled + (self.reverse.filled if self.reverse is not None else 0)

    @property
    def exposure(self) -> int:
        return max(self.filled - self.reversed_qty, 0)

    def matches(self, order: Order) -> bool:
        """Is `order` this leg's? Its tag, and its id once the leg knows it: an id alone can
        name another order (a venue that reused it), and the book may hold that one."""
        if (order.tag or "") != self.tag:
            return False
        return self.order_id is None or order.order_id == self.order_id

    def absorb(self, order: Order) -> None:
        """Take a broker update of this leg's order (any other is ignored, logged); final
        states stay final, fills never decrease."""
        if not self.matches(order):
            log.warning("leg %s (order %s) ignored an update of order %s tagged %s",
                        self.tag, self.order_id, order.order_id, order.tag)
            return
        if self.is_final:
            return
        if order.status not in EVENT_ONLY_STATUSES:
            self.status = order.status
        self.filled = max(self.filled, order.filled_quantity)
        self.average_price = order.average_price or self.average_price
        self.status_message = order.status_message or self.status_message
        if self.complete:
            self.error = None  # it ended COMPLETE after all: an earlier error is stale

    def detail(self) -> dict[str, Any]:
        return {"filled_quantity": self.filled, "average_price": self.average_price,
                "error": self.error, "status_message": self.status_message,
                "rollback": self.rollback, "modifications": self.modifications}


class OrderOps:
    """Place, follow, cancel and flatten single orders: rate-limited, shielded, looked up by tag."""

    def __init__(self, store: Store, config: BatchConfig, writes: StoreWrites) -> None:
        self._store = store
        self._config = config
        self._writes = writes

    async def write(
        self, limiter: OrderBudget, priority: Priority, call: Callable[..., Awaitable[T]],
        *args: Any, deadline: float,
    ) -> T:
        """One order write: wait for a token, then a shielded call with its own timeout.

        A 429 means not processed: retried until `deadline`. A timeout is BrokerUnavailable.
        """
        delay = 0.05
        while True:
            await limiter.acquire(priority)
            try:
                with trio.CancelScope(shield=True), trio.fail_after(self._config.place_timeout_s):
                    return await call(*args)
            except RateLimited:
                if trio.current_time() + delay >= deadline:
                    raise
            except trio.TooSlowError as exc:
                raise BrokerUnavailable("the call timed out: outcome unknown") from exc
            await trio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def send(
        self, actor: AccountActor, limiter: OrderBudget, batch_id: str | None, leg: Leg,
        priority: Priority, deadline: float,
    ) -> None:
        """Place `leg` (written ahead as PLACING); an unknown outcome is resolved by its tag.

        `leg.sent` is set only once the rate-limit token is granted and the POST goes out (a
        leg cancelled while waiting for its token was never sent: NOT_PLACED), and cleared
        again when the broker answered that it did not take the order (a 429, a rejection).
        """
        leg.status = "PLACING"
        if batch_id is not None:
            await self._write_ahead(batch_id, leg)

        async def post(request: OrderRequest) -> str:
            leg.sent = True  # the token is granted: from here the POST may reach the broker
            try:
                return await actor.broker.place(request)
            except BrokerUnavailable:
                raise
            except BrokerError:
                leg.sent = False  # answered: the broker did not take it
                raise

        try:
            order_id = await self.write(limiter, priority, post, leg.request, deadline=deadline)
        except BrokerUnavailable as exc:
            leg.status = "UNKNOWN"
            if batch_id is not None:
                await self.save_leg(batch_id, leg)
            order = await self.lookup(actor, leg.tag)
            if order is None:
                raise UnknownOutcome(
                    f"placing {leg.tag} failed ({exc.message}) and no order carries that tag"
                ) from exc
            leg.order_id = order.order_id
            leg.absorb(order)
        else:
            leg.order_id = order_id
            if leg.status == "PLACING":
                leg.status = "PLACED"
        finally:
            if not leg.sent and leg.status == "PLACING":
                leg.status = "NOT_PLACED"
        if leg.order_id is not None:
            actor.expect(leg.order_id)  # followed even if the ticker loses its pushes
        if batch_id is not None:
            await self.save_leg(batch_id, leg)

    async def lookup(self, actor: AccountActor, tag: str) -> Order | None:
        """The broker's order carrying `tag` (GET /orders), None if there is none."""
        try:
            with trio.fail_after(self._config.lookup_timeout_s):
                listing = await actor.broker.orders()
        except (BrokerError, trio.TooSlowError) as exc:
            raise UnknownOutcome(f"could not look {tag} up: {exc!r}") from exc
        found = [o for o in listing if o.tag == tag]
        return found[-1] if found else None

    async def refresh(self, actor: AccountActor, leg: Leg, max_age_s: float = 0.0) -> None:
        """Read the leg's order: Kite pushes nothing for a bare placement, and pushes can be
        lost. From the account's shared `GET /orders` (one in flight serves every leg that
        asks meanwhile; a routine poll takes one up to `max_age_s` old), not one
        `GET /orders/{id}` per leg: reads are budgeted too."""
        if leg.order_id is None:
            return
        try:
            with trio.fail_after(self._config.lookup_timeout_s):
                listing = await actor.broker.orders(max_age_s=max_age_s)
        except (BrokerError, trio.TooSlowError) as exc:
            log.warning("order listing for %s: %r", leg.order_id, exc)
            return
        found = [o for o in listing if o.order_id == leg.order_id]
        if found:
            leg.absorb(found[-1])

    async def follow(
        self, actor: AccountActor, leg: Leg, updates: trio.MemoryReceiveChannel[Order],
        deadline: float,
    ) -> None:
        """Absorb pushes until the leg is final or `deadline`; poll when pushes are silent,
        and once more just before the deadline."""
        payload = actor.order(leg.order_id) if leg.order_id else None
        if payload is not None:
            leg.absorb(parse_order(payload))
        check_at = deadline - self._config.deadline_check_s
        next_poll = trio.current_time() + self._config.poll_interval_s
        while not leg.is_final:
            now = trio.current_time()
            if now >= deadline:
                return
            wake = min(next_poll, check_at if check_at > now else math.inf, deadline)
            with trio.move_on_at(wake):
                leg.absorb(await updates.receive())
                continue
            if trio.current_time() >= deadline:
                return
            routine = trio.current_time() < check_at  # the deadline check reads afresh
            with trio.move_on_at(deadline):  # a slow poll never carries past the deadline
                await self.refresh(actor, leg,
                                   self._config.poll_interval_s / 2 if routine else 0.0)
            next_poll = trio.current_time() + self._config.poll_interval_s
            if trio.current_time() >= check_at:
                check_at = math.inf

    async def cancel_and_settle(
        self, actor: AccountActor, limiter: OrderBudget, leg: Leg,
        updates: trio.MemoryReceiveChannel[Order], deadline: float,
    ) -> str | None:
        """Cancel an open order (at its variety) and wait for its final state (a fill may win
        the race). A refused or unanswered cancel is asked again every `cancel_retry_s` while
        the order is still working (Kite refuses one while the order "is being processed").
        Returns the last refusal, None when the cancel went through or was not needed."""
        with trio.move_on_at(deadline):
            await self.refresh(actor, leg)
        error = None
        cancel = partial(actor.broker.cancel, variety=leg.request.variety)
        while not leg.is_final and leg.order_id is not None:
            try:
                await self.write(limiter, Priority.ROLLBACK, cancel, leg.order_id,
                                 deadline=deadline)
            except (OrderRejected, BrokerUnavailable) as exc:
                error = str(exc)
                log.info("cancel of %s: %s; waiting for its final state", leg.order_id, exc)
                retry_at = trio.current_time() + self._config.cancel_retry_s
                if retry_at < deadline:
                    await self.follow(actor, leg, updates, retry_at)
                    continue
            else:
                error = None
            break
        await self.follow(actor, leg, updates, deadline)
        return error

    async def find_late(
        self, actor: AccountActor, leg: Leg, updates: trio.MemoryReceiveChannel[Order],
        until: float,
    ) -> bool:
        """A POST whose outcome is unknown may still land: watch the leg's tag (pushes on
        `updates`, from `actor.watch(leg.tag)`) and look it up (GET /orders) every poll
        interval until `until`. True when its order was found (absorbed into `leg`)."""
        while leg.order_id is None:
            try:
                order = await self.lookup(actor, leg.tag)
            except UnknownOutcome as exc:
                log.warning("%s; still watching %s", exc, leg.tag)
                order = None
            if order is None:
                now = trio.current_time()
                if now >= until:
                    return False
                with trio.move_on_at(min(until, now + self._config.poll_interval_s)):
                    order = await updates.receive()
            if order is not None:
                leg.order_id = order.order_id
                leg.absorb(order)
                log.warning("%s landed late at the broker as order %s (%s)", leg.tag,
                            order.order_id, order.status)
        return True

    async def settle(
        self, actor: AccountActor, limiter: OrderBudget, batch_id: str | None, leg: Leg,
        updates: trio.MemoryReceiveChannel[Order], deadline: float,
        find_until: float | None = None,
    ) -> bool:
        """Bring a leg to its final state: find it if its outcome is unknown (watching its tag
        until `find_until`, default `deadline`), cancel it if open and wait for the final state
        until `deadline`. A leg not found stays `unknown`, one still open at `deadline` stays
        open: the caller names them. True when the leg was working (a cancel was due)."""
        if leg.unknown:
            await self.find_late(actor, leg, updates,
                                 deadline if find_until is None else find_until)
        elif leg.order_id is None and leg.status in ("PLACING", "UNKNOWN"):
            leg.status = "NOT_PLACED"  # no POST went out, or the broker answered it did not
        working = leg.order_id is not None and not leg.is_final
        if working:
            await self.cancel_and_settle(actor, limiter, leg, updates, deadline)
        await self.save_leg(batch_id, leg)
        return working

    async def unwind(
        self, actor: AccountActor, limiter: OrderBudget, batch_id: str, leg: Leg,
        deadline: float, *, flatten: bool = True, instruments: InstrumentCache | None = None,
    ) -> None:
        """Roll one leg back: cancel it if open, wait for its final state, then flatten the
        filled quantity with tagged reverse orders. Sets `leg.rollback`.

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
            cancelled = await self.settle(actor, limiter, batch_id, leg, updates, deadline,
                                          find_until=follow_until)
        if leg.unknown:
            rb.update(action="failed", remaining=None, unknown_tags=[leg.tag],
                      quantity_at_most=leg.request.quantity,
                      error=f"placing {leg.tag} had an unknown outcome and no order with that "
                            "tag appeared by the rollback deadline: its exposure is unknown "
                            "(none or the whole quantity)")
            await self.save_leg(batch_id, leg)
            return
        if leg.order_id is None:
            rb["action"] = "none"
            await self.save_leg(batch_id, leg)
            return
        if not leg.is_final:
            working = [leg.order_id]
            if leg.reverse is not None and leg.reverse.order_id:
                working.append(leg.reverse.order_id)
            rb.update(action="failed", filled=leg.reversed_qty, remaining=leg.exposure,
                      open_order_ids=working,
                      error="the leg is still open at the rollback deadline")
            await self.save_leg(batch_id, leg)
            return
        if not flatten:
            rb.update(filled=leg.reversed_qty, remaining=leg.exposure)
            if leg.exposure > 0:
                rb.update(action="failed", error="kept: it hedges legs whose rollback failed")
            else:
                rb["action"] = "cancelled" if cancelled else "none"
            await self.save_leg(batch_id, leg)
            return
        market = ReverseMarket(actor, limiter, instruments, self._config)
        await self.flatten(actor, market, batch_id, leg, deadline, rb)
        if rb["action"] == "in_progress":
            rb["action"] = "cancelled" if cancelled else "none"
        await self.save_leg(batch_id, leg)

    async def flatten(
        self, actor: AccountActor, market: ReverseMarket, batch_id: str | None, leg: Leg,
        deadline: float, rb: dict[str, Any], *, tag_of: Callable[[int], str] | None = None,
        on_reverse: Callable[[Leg], None] | None = None,
    ) -> None:
        """Reverse orders until the leg's filled quantity is undone, one at a time, each at
        most the freeze quantity. A reverse is a MARKET order with protection; once one was
        refused at its POST, a marketable LIMIT. A working reverse is followed (and re-priced, see
        `ReverseMarket.chase`) until `deadline - cleanup_grace_s`, then cancelled and settled
        by `deadline`; while one is working (or its POST's outcome is unknown) no other is
        sent, and its fills count as they come (`leg.reverse`), so a rollback cut short still
        names it. Up to `reverse_attempts` reverses may fill nothing.

        The kill switch flattens a position through here as a leg that filled the position
        (`batch_id` None: nothing stored), with tags of its own (`tag_of(attempt)`);
        `on_reverse` sees each reverse once it is over."""
        limiter = market.limiter
        follow_until = deadline - self._config.cleanup_grace_s
        last: Leg | None = leg.reverse
        if leg.reverse is not None:  # found working (recovery): settle it before anything else
            with actor.watch(leg.reverse.tag) as updates:
                await self.settle(actor, limiter, batch_id, leg.reverse, updates, deadline)
            self._close_reverse(leg)
        failures, as_limit = 0, False
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
                    await self.send(actor, limiter, batch_id, reverse, Priority.ROLLBACK,
                                    deadline)
                except OrderRejected as exc:
                    reverse.status, reverse.error = "REJECTED", exc.message
                except (UnknownOutcome, BrokerError) as exc:
                    reverse.error = str(exc)
                    if not reverse.sent:
                        reverse.status = "NOT_PLACED"
                if reverse.unknown:  # it may still land: never send another meanwhile
                    await self.find_late(actor, reverse, updates, follow_until)
                rb.update(order_id=reverse.order_id, status=reverse.status)  # the one working
                if reverse.order_id is not None and not reverse.is_final:
                    await market.chase(self, reverse, updates, follow_until)
                    if not reverse.is_final:  # never leave a reverse working unseen
                        await self.cancel_and_settle(actor, limiter, reverse, updates, deadline)
            await self.save_leg(batch_id, reverse)
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

    async def _write_ahead(self, batch_id: str, leg: Leg) -> None:
        """Store PLACING before the POST. A leg of the batch waits up to `store_timeout_s`, else
        StoreError: nothing is placed. A reverse order waits `reverse_write_ahead_s` at most,
        then goes out anyway: undoing exposure never waits on the store; its row keeps being
        retried, and recovery finds the order at the broker by its tag meanwhile."""
        if not leg.is_reverse:
            if not await self.save_leg(batch_id, leg, bound=self._config.store_timeout_s):
                raise StoreError(f"could not write leg {leg.tag} ahead within "
                                 f"{self._config.store_timeout_s} s: not placed")
        elif not await self.save_leg(batch_id, leg, bound=self._config.reverse_write_ahead_s):
            log.warning("reverse %s goes out before its row is stored (the store is slow); the "
                        "write is retried until stored, recovery finds it by its tag", leg.tag)

    async def save_leg(self, batch_id: str | None, leg: Leg, *, bound: float = 0.0) -> bool:
        """Write the leg's state as it is now, retried until stored (a later state supersedes
        it); True when stored within `bound` seconds. Nothing to store without a batch."""
        if batch_id is None:
            return True
        return await self._writes.write((batch_id, leg.index), self._leg_write(batch_id, leg),
                                        bound)

    def _leg_write(self, batch_id: str, leg: Leg) -> Write:
        status, order_id, detail = leg.status, leg.order_id, copy.deepcopy(leg.detail())

        async def update() -> None:
            await self._store.update_leg(batch_id, leg.index, status=status, order_id=order_id,
                                         detail=detail)

        if not leg.is_reverse:
            return update
        record = LegRecord(batch_id, leg.index, leg.tag, status, order_id,
                           attrs.asdict(leg.request), detail, kind="reverse")

        async def upsert() -> None:  # a reverse's first write creates its row
            try:
                await update()
            except NotFound:
                await self._store.add_leg(record)

        return upsert
