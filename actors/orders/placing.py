"""Placing and following single orders (`OrderOps`): the primitives of batches, rollbacks,
single orders and the kill switch.

Placing is never blind: each place call takes a rate-limit token, then runs shielded with its own
timeout; a call that timed out or failed with a 5xx is an unknown outcome, resolved by looking its
tag up (`GET /orders`), never by re-posting. Following an order absorbs pushes and polls when they
are silent. A cancel the broker refuses while the order is still working ("being processed") is
retried until the deadline. Undoing orders is `rollback.py`'s.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import attrs
import trio

from brokers.base import (
    BrokerError,
    BrokerUnavailable,
    Order,
    OrderRejected,
    OrderRequest,
    RateLimited,
)
from store import LegRecord, NotFound, Store, StoreError

from ..account import AccountActor
from ..backoff import Backoff
from ..budget import OrderBudget
from ..ratelimit import Priority
from .config import BatchConfig
from .fence import BrokerFence, LeaseExpiring
from .legs import Leg
from .writes import StoreWrites, Write

log = logging.getLogger("actors.batch")  # the coordinator's log, as before the split

T = TypeVar("T")


class UnknownOutcome(Exception):
    """A place call may have reached the broker, and no order with its tag was found."""


class OrderOps:
    """Place, follow, cancel and flatten single orders: rate-limited, shielded, looked up by tag."""

    def __init__(
        self, store: Store, config: BatchConfig, writes: StoreWrites,
        fence: BrokerFence | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._writes = writes
        self._fence = fence  # [cluster]: may a call for the account start now?

    async def write(
        self, limiter: OrderBudget, priority: Priority, call: Callable[..., Awaitable[T]],
        *args: Any, account: str, deadline: float,
    ) -> T:
        """One order write for `account`: wait for a token, then a shielded call with its own
        timeout.

        A 429 means not processed: retried until `deadline`, the account's writes held back
        meanwhile while this one keeps its place in the queue (`OrderBudget.hold`). A timeout
        is BrokerUnavailable. [cluster]: LeaseExpiring, nothing sent, when the call could run
        past this node's lease on the account (checked right before each attempt).
        """
        backoff = Backoff(0.05, 1.0)
        while True:
            granted_at = await limiter.acquire(priority)
            if self._fence is not None:
                self._fence(account, self._config.place_timeout_s)
            try:
                with trio.CancelScope(shield=True), trio.fail_after(self._config.place_timeout_s):
                    return await call(*args)
            except RateLimited:
                if trio.current_time() + backoff.peek() >= deadline:
                    raise
            except trio.TooSlowError as exc:
                raise BrokerUnavailable("the call timed out: outcome unknown") from exc
            finally:  # it reached the broker by its answer: counted from then (a sliding second)
                limiter.answered(granted_at)
            limiter.hold(backoff.next())

    async def send(
        self, actor: AccountActor, limiter: OrderBudget, batch_id: str | None, leg: Leg,
        priority: Priority, deadline: float, *, written_ahead: bool = False,
    ) -> None:
        """Place `leg` (written ahead as PLACING, unless its row already says so:
        `written_ahead`); an unknown outcome is resolved by its tag.

        `leg.sent` is set only once the rate-limit token is granted and the POST goes out (a
        leg cancelled while waiting for its token was never sent: NOT_PLACED), and cleared
        again when the broker answered that it did not take the order (a 429, a rejection).
        """
        leg.status = "PLACING"
        if batch_id is not None and not written_ahead:
            await self._write_ahead(batch_id, leg)

        async def post(request: OrderRequest) -> str:
            leg.sent = True  # the token is granted: from here the POST may reach the broker
            try:
                return await actor.broker.place(request)
            except BrokerUnavailable:
                raise
            except BrokerError:
                if leg.order_id is None:  # (a push naming its order says it did take it)
                    leg.sent = False  # answered: the broker did not take it
                raise

        try:
            order_id = await self.write(limiter, priority, post, leg.request,
                                        account=actor.account, deadline=deadline)
        except BrokerUnavailable as exc:
            if leg.order_id is not None:  # a push named its order meanwhile (`answer.py`)
                log.warning("placing %s: %s; its order %s is known from its push", leg.tag,
                            exc.message, leg.order_id)
            else:
                await self._find_unknown(actor, batch_id, leg, exc)
        else:
            if leg.order_id not in (None, order_id):
                log.error("placing %s: the broker answered order %s, its push named order %s",
                          leg.tag, order_id, leg.order_id)
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

    async def _find_unknown(
        self, actor: AccountActor, batch_id: str | None, leg: Leg, exc: BrokerUnavailable
    ) -> None:
        """A POST with an unknown outcome: its order looked up by tag, else UnknownOutcome."""
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
            leg.absorb(actor.broker.parse_order(payload))
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
                                 account=actor.account, deadline=deadline)
            except (OrderRejected, BrokerUnavailable, LeaseExpiring) as exc:
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
