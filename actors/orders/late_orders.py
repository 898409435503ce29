"""Late orders: a leg recovery concluded NOT_PLACED that reaches the broker afterwards.

The [cluster] fence checks the lease right before each POST, but a node paused (SIGSTOP, GC, a
frozen VM) after that check and before the POST leaves the process sends it late, once resumed;
a process killed with a POST in flight has the same race with the next start. Meanwhile recovery
(at the takeover, or at start) looked the leg's tag up, found nothing and concluded the leg
NOT_PLACED, so the batch finished without it. An order landing afterwards would be exposure
nobody owns. So the owner keeps watching each such tag (`AccountActor.watch`: ticker pushes
and reconciles; plus its own shared `GET /orders` every `late_poll_s`, since the actor polls
only while it knows of a working order) for `late_watch_s`. Found, it is logged (error), counted
(`on_late`: /metrics), cancelled if open and its fill flattened by the rollback's own `unwind`
(reverse orders tagged as the leg's, `legs.reverse_tag`, numbered after any the leg had), and
recorded on the batch (`late_orders` in its result; an exposure left makes it
`rollback_failed`, with that webhook event). While it is undone it counts as a recovery, so a
kill switch waits for it; one found while a kill switch runs is only cancelled (the kill may
have flattened its fill already) and named as failed if it filled.

Why 300 s by default (`[batches] late_watch_s`): the order is late by the sender's pause plus
its own call (`place_timeout_s`, seconds). A GC pause or a swap storm lasts seconds; a frozen or
live-migrated VM, tens of seconds; a SIGSTOP an operator undoes, or a VM resumed by hand,
minutes. Five minutes covers the first two with a wide margin and the usual third; an order
paused longer than the window lands unwatched (the account's orders still show it). Its cost:
one shared `GET /orders` every `late_poll_s` while any leg is watched, nothing otherwise.

A rollback's reverse order whose outcome was unknown, concluded not placed, is watched the
same way: recovery sent the next reverse in its place, so a late one over-flattens the leg.
It is cancelled if open and what it filled is bought back (or sold again) under an exit tag
(`od<id>00X<n>`), never a reverse tag of the leg: those run the other way.

The watch is in memory on the node that owns the account and ends with that ownership. A node
restarted while a batch is still unfinished recovers it again and looks its tags up at the
broker anew (and watches again what it concludes NOT_PLACED); a batch recovery already finished
is not looked at again by the next start: a late order landing after such a restart is not
caught here (the reconcile still shows it in the account's orders).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial

import attrs
import trio

from brokers.base import BrokerError, Order
from store import LegRecord

from ..outcomes import BatchResult, LateOrder, RollbackDetail
from .accounts import AccountContext, Accounts, Work
from .config import BatchConfig
from .execution import BatchRunner
from .legs import Leg, exit_id, exit_tag, reverse_of
from .results import exposure_of
from .reverse import ReverseMarket
from .rollback import Rollback, cut_short, failed

__all__ = ["LateOrders", "LateWatch"]

log = logging.getLogger("actors.batch")  # the coordinator's log


@attrs.define(eq=False)
class LateWatch:
    """One recovered batch's legs whose outcome was unknown, watched by tag from before
    recovery listed the broker's orders (so nothing landing in between is missed)."""

    batch_id: str
    account: str
    updates: dict[str, trio.MemoryReceiveChannel[Order]]  # by tag
    attempts: dict[int, int] = attrs.field(factory=dict)  # leg index -> next reverse attempt
    concluded: dict[str, Leg] = attrs.field(factory=dict)  # legs recovery said NOT_PLACED
    result: BatchResult | None = None  # the batch's result once recovery finished it

    def begin(self) -> None:
        """A recovery attempt starts: only what the one that finishes concludes counts."""
        self.concluded.clear()
        self.result = None

    def not_placed(self, leg: Leg) -> None:
        """Recovery concluded `leg` NOT_PLACED (no order carries its tag)."""
        if leg.tag in self.updates:
            self.concluded[leg.tag] = leg

    def finished(self, result: BatchResult) -> None:
        self.result = result


class LateOrders:
    """Watches the legs recoveries concluded NOT_PLACED; undoes a late order found with one."""

    def __init__(
        self, accounts: Accounts, runner: BatchRunner, rollback: Rollback, config: BatchConfig,
        on_late: Callable[[str], None] | None = None,
    ) -> None:
        """`on_late(account)`: a late order was found (the metric)."""
        self._accounts = accounts
        self._runner = runner
        self._rollback = rollback
        self._config = config
        self._on_late = on_late
        self.watching = 0  # legs watched now
        self.found = 0  # late orders found since start
        self.undone = 0  # of those, cancelled or flattened with nothing left

    @contextmanager
    def watch(
        self, ctx: AccountContext | None, batch_id: str, records: list[LegRecord]
    ) -> Iterator[LateWatch | None]:
        """Watch the tags of the batch's legs whose outcome may be unknown (stored as sent,
        with no order id) while the batch is recovered and `guard` runs."""
        if ctx is None:
            yield None
            return
        legs = [Leg.from_record(r) for r in records]  # reverses too: one may land late
        attempts: dict[int, int] = {}
        for record in records:
            index, attempt = reverse_of(record.index)
            attempts[index] = max(attempts.get(index, 0), attempt + 1)
        with ExitStack() as stack:
            updates = {leg.tag: stack.enter_context(ctx.actor.watch(leg.tag))
                       for leg in legs if leg.unknown}
            yield LateWatch(batch_id, ctx.actor.account, updates, attempts)

    async def guard(self, ctx: AccountContext, watch: LateWatch) -> None:
        """Watch each leg recovery concluded NOT_PLACED for `late_watch_s` (while this node
        owns the account); undo any order that lands with its tag."""
        if watch.result is None or not watch.concluded:
            return
        until = trio.current_time() + self._config.late_watch_s
        log.info("batch %s: watching %s for %.0f s for a late order", watch.batch_id,
                 ", ".join(watch.concluded), self._config.late_watch_s)
        async with trio.open_nursery() as nursery:
            for tag, leg in watch.concluded.items():
                nursery.start_soon(partial(self._guard_leg, ctx, watch, leg, watch.updates[tag],
                                           until))

    async def _guard_leg(
        self, ctx: AccountContext, watch: LateWatch, leg: Leg,
        updates: trio.MemoryReceiveChannel[Order], until: float,
    ) -> None:
        self._changed(watching=1)
        try:
            order = await self._await_late(ctx, leg.tag, updates, until)
        finally:
            self._changed(watching=-1)
        if order is not None:
            await self._undo(ctx, watch, leg, order)

    async def _await_late(
        self, ctx: AccountContext, tag: str, updates: trio.MemoryReceiveChannel[Order],
        until: float,
    ) -> Order | None:
        """The first order with `tag` (pushed, or in a listing) before `until`; None when the
        window ends, or this node no longer owns the account, first."""
        poll = self._config.late_poll_s
        next_poll = trio.current_time() + poll
        while trio.current_time() < until and self._accounts.owned(ctx.actor.account):
            with trio.move_on_at(min(until, next_poll)):
                return await updates.receive()
            if trio.current_time() < next_poll:
                continue
            next_poll = trio.current_time() + poll
            try:
                with trio.fail_after(self._config.lookup_timeout_s):
                    listing = await ctx.actor.broker.orders(max_age_s=poll / 2)
            except (BrokerError, trio.TooSlowError) as exc:
                log.warning("watching %s for a late order: listing failed: %r", tag, exc)
                continue
            found = [o for o in listing if o.tag == tag]
            if found:
                return found[-1]
        return None

    async def _undo(self, ctx: AccountContext, watch: LateWatch, concluded: Leg,
                    order: Order) -> None:
        """Cancel the late order if open and flatten what it filled (`Rollback.unwind`,
        shielded: a cleanup), then record it on the batch."""
        account, batch_id = watch.account, watch.batch_id
        leg = Leg(concluded.index, concluded.tag, concluded.request, order.order_id,
                  status="PLACED", sent=True,
                  next_attempt=watch.attempts.get(concluded.index, 0))
        leg.absorb(order)
        self._changed(found=1)
        if self._on_late is not None:
            self._on_late(account)
        log.error("account %s batch %s leg %d: order %s tagged %s landed at the broker (%s, "
                  "filled %d) after recovery had concluded the leg NOT_PLACED; undoing it",
                  account, batch_id, leg.index, order.order_id, leg.tag, order.status,
                  order.filled_quantity)
        ctx.actor.expect(order.order_id)
        # Tracked as a recovery while it runs: a kill switch (and shutdown's drain) waits for
        # it, so the two never flatten the same fill. One found while a kill switch runs is
        # cancelled, not flattened: the kill may already have flattened its fill.
        killing = account in self._accounts.killing
        key = f"{batch_id}:late:{leg.index}"
        work = self._accounts.batches.setdefault(key, Work(account, frozenset(
            {(leg.request.exchange, leg.request.tradingsymbol)}), recovery=True))
        deadline = trio.current_time() + self._config.rollback_timeout_s
        try:
            # Shielded as a rollback is (shutdown past its grace still cuts it: `abortable`).
            with self._runner.abortable() as shield, ctx.limiter.undoing():
                with trio.CancelScope(deadline=deadline + self._config.cleanup_grace_s):
                    try:
                        if leg.is_reverse:
                            await self._unwind_reverse(ctx, leg, watch.updates[leg.tag],
                                                       deadline, flatten=not killing)
                        else:
                            await self._rollback.unwind(ctx.actor, ctx.limiter, batch_id, leg,
                                                        deadline, flatten=not killing,
                                                        instruments=ctx.instruments)
                    except Exception as exc:  # recorded as failed: never left silent
                        log.exception("undoing late order %s failed", order.order_id)
                        leg.rollback = cut_short(leg, f"{type(exc).__name__}: {exc}")
                if leg.rollback is None or leg.rollback["action"] == "in_progress":
                    leg.rollback = cut_short(leg, "cut short by shutdown" if shield.cancel_called
                                             else "undoing the late order ran out of time")
                elif killing and leg.exposure > 0:
                    leg.rollback["error"] = ("not flattened: the account's kill switch was "
                                             "running (it flattens positions); check the position")
                with trio.CancelScope(shield=True):
                    await self._runner.ops.save_leg(batch_id, leg)
                    await self._record(watch, leg)
        finally:
            if self._accounts.batches.get(key) is work:
                del self._accounts.batches[key]
            work.finish()
        if not failed(leg):
            self._changed(undone=1)
        log.log(logging.ERROR if failed(leg) else logging.WARNING,
                "account %s batch %s: late order %s (%s): %s", account, batch_id,
                order.order_id, leg.tag, leg.rollback)

    async def _unwind_reverse(
        self, ctx: AccountContext, leg: Leg, updates: trio.MemoryReceiveChannel[Order],
        deadline: float, *, flatten: bool,
    ) -> None:
        """A late reverse order over-flattens the leg it reversed (recovery sent another in its
        place): cancel it if open, then buy back (or sell again) what it filled, under an exit
        tag of its own (`legs.exit_tag`) so that no recovery takes that order for one of the
        leg's reverses, whose tags run in the reverse direction."""
        rb: dict[str, object] = {"action": "in_progress", "order_id": None, "status": None,
                                 "filled": 0, "remaining": 0}
        leg.rollback = rb
        cancelled = False
        if not leg.is_final:
            error = await self._runner.ops.cancel_and_settle(ctx.actor, ctx.limiter, leg,
                                                             updates, deadline)
            cancelled = error is None and leg.status == "CANCELLED"
        if not leg.is_final:
            rb.update(action="failed", remaining=leg.filled, open_order_ids=[leg.order_id],
                      error="the late reverse order is still open at the deadline")
            return
        if leg.filled == 0:
            rb["action"] = "cancelled" if cancelled else "none"
            return
        if not flatten:
            rb.update(action="failed", remaining=leg.filled)
            return
        tag_of = partial(exit_tag, exit_id(ctx.actor.account))
        held = Leg(0, tag_of(None), leg.request, status="COMPLETE", filled=leg.filled)
        market = ReverseMarket(ctx.actor, ctx.limiter, ctx.instruments, self._config)
        await self._rollback.flatten(ctx.actor, market, None, held, deadline, rb, tag_of=tag_of)
        leg.reverse_filled = held.reversed_qty
        rb["remaining"] = leg.exposure

    async def _record(self, watch: LateWatch, leg: Leg) -> None:
        """The batch's result with the late order added (and, if it left exposure, as
        rollback_failed with the `batch.rollback_failed` event); no await between read and
        update, so two late legs of a batch each add theirs."""
        assert watch.result is not None and leg.order_id is not None and leg.rollback
        result = watch.result
        late = LateOrder(index=leg.index, tag=leg.tag, order_id=leg.order_id, status=leg.status,
                         filled_quantity=leg.filled, rollback=RollbackDetail(**leg.rollback))
        changes: dict[str, object] = {"late_orders": [*(result.late_orders or []), late]}
        event = None
        if failed(leg):
            changes.update(status="rollback_failed",
                           exposure=[*(result.exposure or []), exposure_of(leg)])
            event = "batch.rollback_failed"
        watch.result = attrs.evolve(result, **changes)
        await self._runner.amend(watch.account, watch.result, event)

    def _changed(self, *, watching: int = 0, found: int = 0, undone: int = 0) -> None:
        self.watching += watching
        self.found += found
        self.undone += undone
        self._accounts.changes.notify()
