"""The order primitives of batches, rollbacks and the kill switch: `Leg` and `OrderOps`.

Placing is never blind: each place call takes a rate-limit token, then runs shielded with its own
timeout; a call that timed out or failed with a 5xx is an unknown outcome, resolved by looking its
tag up (`GET /orders`), never by re-posting. Following an order absorbs pushes and polls when they
are silent. Undoing one (`unwind`) cancels it if open, waits for its final state and flattens the
filled quantity with tagged reverse orders.
"""

from __future__ import annotations

import base64
import logging
import math
import secrets
from collections.abc import Awaitable, Callable
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
from store import LegRecord, Store, StoreError

from ._config import BatchConfig
from .account import AccountActor
from .ratelimit import Priority, RateLimiter

log = logging.getLogger("actors.batch")  # the coordinator's log, as before the split

T = TypeVar("T")


class UnknownOutcome(Exception):
    """A place call may have reached the broker, and no order with its tag was found."""


def new_batch_id() -> str:
    """10 characters of lowercase base32 (50 random bits): short enough for Kite's tags."""
    return base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]


def tag_for(batch_id: str, index: int, kind: str, attempt: int) -> str:
    """`od` + batch id + leg number + L (leg) / R (reverse) / S (single) + retry digit."""
    return f"od{batch_id}{index}{kind}{attempt}"


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
    sent: bool = False  # a POST may have reached the broker
    rollback: dict[str, Any] | None = None
    reverse_filled: int = 0
    next_attempt: int = 0

    @classmethod
    def from_record(cls, record: LegRecord) -> Leg:
        leg = cls(record.index, record.tag, OrderRequest(**record.request), record.order_id)
        # The broker's listing is the truth after a crash: a stored final state is re-read.
        leg.status = "PLACED" if record.status in FINAL_STATUSES else record.status
        leg.sent = record.status != "PENDING"
        leg.filled = int(record.detail.get("filled_quantity") or 0)
        return leg

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def complete(self) -> bool:
        return self.status == "COMPLETE" and self.filled >= self.request.quantity

    def absorb(self, order: Order) -> None:
        """Take a broker update; final states stay final, fills never decrease."""
        if self.is_final:
            return
        if order.status not in EVENT_ONLY_STATUSES:
            self.status = order.status
        self.filled = max(self.filled, order.filled_quantity)
        self.average_price = order.average_price or self.average_price
        self.status_message = order.status_message or self.status_message

    def detail(self) -> dict[str, Any]:
        return {"filled_quantity": self.filled, "average_price": self.average_price,
                "error": self.error, "status_message": self.status_message,
                "rollback": self.rollback}

    def as_result(self) -> dict[str, Any]:
        return {"index": self.index, "order_id": self.order_id, "tag": self.tag,
                "status": self.status, "filled_quantity": self.filled,
                "average_price": self.average_price, "error": self.error,
                "rollback": self.rollback}


class OrderOps:
    """Place, follow, cancel and flatten single orders: rate-limited, shielded, looked up by tag."""

    def __init__(self, store: Store, config: BatchConfig) -> None:
        self._store = store
        self._config = config

    async def write(
        self, limiter: RateLimiter, priority: Priority, call: Callable[..., Awaitable[T]],
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
        self, actor: AccountActor, limiter: RateLimiter, batch_id: str | None, leg: Leg,
        priority: Priority, deadline: float,
    ) -> None:
        """Place `leg` (written ahead as PLACING); an unknown outcome is resolved by its tag."""
        leg.status = "PLACING"
        if batch_id is not None:
            await self.save_leg(batch_id, leg, strict=True)
        leg.sent = True
        try:
            order_id = await self.write(limiter, priority, actor.broker.place, leg.request,
                                        deadline=deadline)
        except BrokerUnavailable as exc:
            leg.status = "UNKNOWN"
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

    async def refresh(self, actor: AccountActor, leg: Leg) -> None:
        """GET /orders/{id}: Kite pushes nothing for a bare placement, and pushes can be lost."""
        if leg.order_id is None:
            return
        try:
            with trio.fail_after(self._config.lookup_timeout_s):
                history = await actor.broker.order_history(leg.order_id)
        except (BrokerError, trio.TooSlowError) as exc:
            log.warning("order history of %s: %r", leg.order_id, exc)
            return
        if history:
            leg.absorb(history[-1])

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
            await self.refresh(actor, leg)
            next_poll = trio.current_time() + self._config.poll_interval_s
            if trio.current_time() >= check_at:
                check_at = math.inf

    async def cancel_and_settle(
        self, actor: AccountActor, limiter: RateLimiter, leg: Leg,
        updates: trio.MemoryReceiveChannel[Order], deadline: float,
    ) -> None:
        """Cancel an open order and wait for its final state (a fill may win the race)."""
        await self.refresh(actor, leg)
        if leg.is_final or leg.order_id is None:
            return
        try:
            await self.write(limiter, Priority.ROLLBACK, actor.broker.cancel, leg.order_id,
                             deadline=deadline)
        except (OrderRejected, BrokerUnavailable) as exc:
            log.info("cancel of %s: %s; waiting for its final state", leg.order_id, exc)
        await self.follow(actor, leg, updates, deadline)

    async def unwind(
        self, actor: AccountActor, limiter: RateLimiter, batch_id: str, leg: Leg,
        deadline: float,
    ) -> None:
        """Roll one leg back: cancel it if open, wait for its final state, then flatten the
        filled quantity with tagged reverse orders. Sets `leg.rollback`."""
        # "in_progress" until decided: a rollback cut off by its hard deadline reads as failed.
        rb: dict[str, Any] = {"action": "in_progress", "order_id": None, "status": None,
                              "filled": 0, "remaining": 0}
        leg.rollback = rb
        with actor.watch(leg.tag) as updates:
            if leg.order_id is None and leg.sent:
                try:
                    order = await self.lookup(actor, leg.tag)
                except UnknownOutcome as exc:
                    rb.update(action="failed", remaining=None, error=str(exc))
                    return
                if order is not None:
                    leg.order_id = order.order_id
                    leg.absorb(order)
            if leg.order_id is None:
                leg.status = "NOT_PLACED" if leg.status in ("PLACING", "UNKNOWN") else leg.status
                rb["action"] = "none"
                await self.save_leg(batch_id, leg)
                return
            cancelled = not leg.is_final
            if cancelled:
                await self.cancel_and_settle(actor, limiter, leg, updates, deadline)
                if not leg.is_final:
                    rb.update(action="failed", remaining=leg.filled - leg.reverse_filled,
                              open_order_ids=[leg.order_id],
                              error="the leg is still open at the rollback deadline")
                    await self.save_leg(batch_id, leg)
                    return
        await self._flatten(actor, limiter, batch_id, leg, deadline, rb)
        if rb["action"] == "in_progress":
            rb["action"] = "cancelled" if cancelled else "none"
        await self.save_leg(batch_id, leg)

    async def _flatten(
        self, actor: AccountActor, limiter: RateLimiter, batch_id: str, leg: Leg,
        deadline: float, rb: dict[str, Any],
    ) -> None:
        exposure = leg.filled - leg.reverse_filled
        reverse: Leg | None = None
        while (exposure > 0 and leg.next_attempt < self._config.reverse_attempts
               and trio.current_time() < deadline):
            attempt = leg.next_attempt
            leg.next_attempt += 1
            tag = f"{leg.tag[:-2]}R{attempt}"
            request = reverse_request(leg.request, exposure, tag, self._config.market_protection)
            reverse = Leg(100 * (attempt + 1) + leg.index, tag, request)
            await self._store.add_leg(LegRecord(batch_id, reverse.index, tag, "PENDING", None,
                                                attrs.asdict(request), {}, kind="reverse"))
            with actor.watch(tag) as updates:
                try:
                    await self.send(actor, limiter, batch_id, reverse, Priority.ROLLBACK,
                                    deadline)
                except OrderRejected as exc:
                    reverse.status, reverse.error = "REJECTED", exc.message
                except (UnknownOutcome, BrokerError) as exc:
                    reverse.error = str(exc)
                rb.update(order_id=reverse.order_id, status=reverse.status)  # the one working
                if reverse.order_id is not None and not reverse.is_final:
                    await self.follow(actor, reverse, updates, deadline)
                    if not reverse.is_final:  # never leave a reverse working unseen
                        grace = trio.current_time() + self._config.cleanup_grace_s
                        await self.cancel_and_settle(actor, limiter, reverse, updates, grace)
            await self.save_leg(batch_id, reverse)
            leg.reverse_filled += reverse.filled
            exposure = leg.filled - leg.reverse_filled
            if reverse.status == "REJECTED" or reverse.order_id is None:
                break
        rb.update(filled=leg.reverse_filled, remaining=exposure)
        if reverse is not None:
            rb.update(order_id=reverse.order_id, status=reverse.status)
        if exposure > 0:
            rb["action"] = "failed"
            rb["error"] = (reverse.error or reverse.status_message if reverse is not None
                           else "no time left to flatten")
            if reverse is not None and reverse.order_id and not reverse.is_final:
                rb["open_order_ids"] = [reverse.order_id]
        elif leg.reverse_filled:
            rb["action"] = "flattened"

    async def save_leg(self, batch_id: str, leg: Leg, *, strict: bool = False) -> None:
        """Write the leg's state, shielded; `strict` (write-ahead) raises if the store fails."""
        try:
            with trio.CancelScope(shield=True), trio.fail_after(self._config.store_timeout_s):
                await self._store.update_leg(batch_id, leg.index, status=leg.status,
                                             order_id=leg.order_id, detail=leg.detail())
        except (StoreError, trio.TooSlowError) as exc:
            if strict:
                raise StoreError(f"could not write leg {leg.tag} ahead: {exc!r}") from exc
            log.exception("could not store leg %s", leg.tag)
