"""Crash recovery: every unfinished batch reconciled with the broker by tag at start.

All legs COMPLETE (and no rollback begun) → `success`; anything else → rolled back, reverse orders
of an interrupted rollback counted first so nothing is flattened twice. Where the broker lists
fewer fills on a leg than the store holds, the broker is the truth (only what it says is filled
is flattened) and the disagreement is a conflict in the account's health. Reverse orders are found
at the broker by their tags (derived from their leg's), also those whose row was never stored:
a rollback places a reverse without waiting on a slow store. The broker lists the
day's orders only: on the same (IST) day a sent leg it does not list never reached it, but for a
batch created on an earlier day every sent order it does not list is *lost* → `rollback_failed`
naming each one, for manual handling: positions are never guessed, and nothing is placed.
A recovery that shutdown cuts short again (RollbackAborted) leaves the batch unfinished as it
was: the next start resumes it the same way. One that fails (the broker unreachable, the day's
token not loaded yet) raises; the coordinator retries it with backoff from what the store holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from brokers.base import FINAL_STATUSES, BrokerError, Order
from store import BatchRecord, LegRecord, Store, StoreError

from ..backoff import Backoff
from ..calendar import trading_day
from .accounts import AccountContext, Accounts, Work
from .config import BatchConfig
from .execution import BatchRunner, RollbackAborted
from .late_orders import LateOrders, LateWatch
from .legs import NOT_SENT, Leg, reverse_index, reverse_of, reverse_prefix, reverse_request
from .placing import UnknownOutcome
from .results import FINAL, Plan

log = logging.getLogger("actors.batch")  # the coordinator's log, as before the split

def _sent(record: LegRecord) -> bool:
    """Whether a POST of this stored leg may have reached the broker."""
    refused = record.status in FINAL_STATUSES and record.order_id is None
    return record.status not in NOT_SENT and not refused


async def recover(
    runner: BatchRunner, ctx: AccountContext, batch: BatchRecord, records: list[LegRecord],
    late: LateWatch | None = None,
) -> str:
    """Reconcile one unfinished batch with the broker by tag: success, rolled back, or (orders
    the broker no longer lists) rollback_failed naming them. `late` (its tags watched since
    before the listing) hears of each leg concluded NOT_PLACED, and of the result."""
    if late is not None:
        late.begin()
    listing = await ctx.actor.broker.orders()
    by_tag = {o.tag: o for o in listing if o.tag}
    listed = {o.order_id for o in listing}
    stored = {r.index: r for r in records if r.kind == "leg"}
    legs = tuple(Leg.from_record(r) for r in records if r.kind == "leg")
    for leg in legs:
        order = by_tag.get(leg.tag)
        if order is not None:
            leg.sent, leg.order_id = True, order.order_id
            _broker_fills_rule(ctx, batch.batch_id, leg, order)
            leg.absorb(order)
    reverses = [r for r in records if r.kind == "reverse"]
    reverses += _unstored_reverses(batch.batch_id, legs, reverses, listing,
                                   runner.config.market_protection)
    lost: dict[int, list[str]] = {}
    if trading_day(batch.created_at) < trading_day(time.time()):
        # A later day: the broker no longer lists the batch's orders. Not listed is not "not
        # placed": every order that may have been sent is lost.
        for record in records:
            if _sent(record) and record.tag not in by_tag:
                lost.setdefault(reverse_of(record.index)[0], []).append(record.tag)
    else:
        for leg in legs:
            if leg.order_id and leg.order_id not in listed:
                lost[leg.index] = [leg.tag]
            elif leg.unknown:  # the day's listing is complete: it never reached the broker
                leg.sent, leg.status = False, "NOT_PLACED"  # ... yet: `late` watches for it
                if late is not None:
                    late.not_placed(leg)
    plan = Plan.of_request(batch.request)
    if lost:
        _report_lost(legs, stored, lost, reverses, by_tag, batch)
        status = "rollback_failed"
    elif batch.status == "running" and not reverses and all(leg.complete for leg in legs):
        status = "success"
    else:
        await _settle_reverses(runner, ctx, batch.batch_id, legs, reverses, by_tag, late)
        status = await runner.rollback(ctx, batch.batch_id, legs, plan.execution)
    elapsed = max(time.time() - batch.created_at, 0.0)
    result = await runner.finish(batch.account, batch.batch_id, legs, status, elapsed, plan)
    if late is not None:
        late.finished(result)
    return status


def _broker_fills_rule(ctx: AccountContext, batch_id: str, leg: Leg, order: Order) -> None:
    """The broker lists fewer fills than the store holds for this leg: the broker is the truth
    (what it says is filled is what gets flattened), and the disagreement is a conflict in the
    account's health for the operator to look into."""
    if order.filled_quantity >= leg.filled:
        return
    ctx.actor.report_conflict(
        f"batch {batch_id} leg {leg.index} ({leg.tag}, order {order.order_id}): the broker "
        f"lists {order.filled_quantity} filled, the store held {leg.filled}; recovery follows "
        "the broker")
    leg.filled = order.filled_quantity


def _unstored_reverses(
    batch_id: str, legs: tuple[Leg, ...], reverses: list[LegRecord], listing: list[Order],
    protection: float,
) -> list[LegRecord]:
    """Reverse orders the broker lists for these legs (by tag) with no stored row: their rows,
    rebuilt from the leg and the broker's order."""
    stored = {r.tag for r in reverses}
    found = []
    for leg in legs:
        prefix = reverse_prefix(leg.tag)
        for order in listing:
            tag = order.tag or ""
            if not tag.startswith(prefix) or tag in stored or not tag[len(prefix):].isdigit():
                continue
            stored.add(tag)
            request = reverse_request(leg.request, order.quantity, tag, protection)
            index = reverse_index(leg.index, int(tag[len(prefix):]))
            found.append(LegRecord(batch_id, index, tag, order.status, order.order_id,
                                   attrs.asdict(request), {}, kind="reverse"))
            log.warning("reverse %s (order %s) found at the broker with no stored row", tag,
                        order.order_id)
    return found


def _report_lost(
    legs: tuple[Leg, ...], stored: Mapping[int, LegRecord], lost: Mapping[int, list[str]],
    reverses: list[LegRecord], by_tag: Mapping[str, Order], batch: BatchRecord,
) -> None:
    """Name every lost order and every leg left as it is: nothing is placed or cancelled."""
    day = trading_day(batch.created_at).isoformat()
    for leg in legs:
        tags = lost.get(leg.index)
        if tags:
            if leg.tag in tags:
                leg.status = stored[leg.index].status  # the last state known: not re-read
            leg.error = (f"the broker no longer lists {', '.join(tags)} (batch of {day}): its "
                         "position is not guessed; handle it manually")
            leg.rollback = {"action": "failed", "order_id": None, "status": None,
                            "filled": 0, "remaining": None, "unknown_tags": tags,
                            "quantity_at_most": leg.request.quantity, "error": leg.error}
            continue
        if leg.order_id is None:
            leg.rollback = {"action": "none", "order_id": None, "status": None, "filled": 0,
                            "remaining": 0}
            continue
        own = [r for r in reverses if reverse_of(r.index)[0] == leg.index]
        reversed_qty = sum(by_tag[r.tag].filled_quantity for r in own if r.tag in by_tag)
        working = [o.order_id for o in [by_tag.get(leg.tag)] + [by_tag.get(r.tag) for r in own]
                   if o is not None and o.status not in FINAL_STATUSES]
        remaining = max(leg.filled - reversed_qty, 0)
        if remaining or working:
            leg.rollback = {"action": "failed", "order_id": None, "status": None,
                            "filled": reversed_qty, "remaining": remaining,
                            "open_order_ids": working,
                            "error": "not rolled back: other orders of the batch are lost; "
                                     "handle the batch manually"}
        else:
            leg.rollback = {"action": "none", "order_id": None, "status": None,
                            "filled": reversed_qty, "remaining": 0}


async def _settle_reverses(
    runner: BatchRunner, ctx: AccountContext, batch_id: str, legs: tuple[Leg, ...],
    reverses: list[LegRecord], by_tag: Mapping[str, Any], late: LateWatch | None = None,
) -> None:
    """Reverse orders of an interrupted rollback: wait for (or cancel) them, count fills. One
    still working is kept on its leg (`leg.reverse`): the rollback settles it before it sends
    any other, and names it if it cannot. One not at the broker is not placed (the rollback
    sends the next attempt), and `late` watches for it landing after all."""
    deadline = trio.current_time() + runner.config.rollback_timeout_s
    by_index = {leg.index: leg for leg in legs}
    for record in reverses:
        leg_index, attempt = reverse_of(record.index)
        leg = by_index[leg_index]
        leg.next_attempt = max(leg.next_attempt, attempt + 1)
        order = by_tag.get(record.tag)
        if order is None:
            if late is not None:
                late.not_placed(Leg.from_record(record))
            continue
        reverse = Leg.from_record(record)
        reverse.sent, reverse.order_id = True, order.order_id
        reverse.absorb(order)
        if not reverse.is_final:
            with ctx.actor.watch(reverse.tag) as updates:
                await runner.ops.cancel_and_settle(ctx.actor, ctx.limiter, reverse, updates,
                                                   deadline)
        await runner.ops.save_leg(batch_id, reverse)  # its row too, if it was never stored
        if reverse.is_final or leg.reverse is not None:
            leg.reverse_filled += reverse.filled
        else:
            leg.reverse = reverse


class Recoveries:
    """The unfinished batches of earlier runs, each recovered in its own task; a failed attempt
    is retried with backoff until one succeeds or the coordinator stops."""

    def __init__(
        self, store: Store, accounts: Accounts, runner: BatchRunner, config: BatchConfig,
        late: LateOrders,
    ) -> None:
        self._late = late
        self._store = store
        self._accounts = accounts
        self._runner = runner
        self._config = config
        self.stopping = False  # drain or abort: failed recoveries are not retried any more
        self.failures = 0  # failed recovery attempts since start
        self._retry_now = trio.Event()  # wakes recoveries waiting for a retry

    def track(self, batch: BatchRecord, records: list[LegRecord]) -> Work:
        # Tracked like a submitted batch: shutdown's drain and the kill switch wait for it.
        symbols = frozenset((str(r.request.get("exchange")), str(r.request.get("tradingsymbol")))
                            for r in records)
        return self._accounts.batches.setdefault(batch.batch_id,
                                                 Work(batch.account, symbols, recovery=True))

    def retry_now(self) -> None:
        """Retry every recovery waiting after a failed attempt now (new credentials, say)."""
        self._retry_now.set()
        self._retry_now = trio.Event()

    def stop(self) -> None:
        """No more retries: those waiting give up now, the next start resumes them."""
        self.stopping = True
        self.retry_now()

    async def resume(self, account: str, batch_id: str) -> None:
        """A submitted batch that did not conclude while this node still owns its account and
        runs on (its conclusion crashed, or the fence kept its rollback's reverse orders from
        being sent to the end): recovered now. Else the next start, or the account's next
        owner, recovers it."""
        if self.stopping or not self._accounts.owned(account) or batch_id in self._accounts.batches:
            return
        try:
            found = await self._store.get_batch(batch_id)
        except StoreError as exc:
            log.warning("batch %s did not conclude and could not be read (%s): the next start "
                        "or takeover recovers it", batch_id, exc)
            return
        if found is not None and found[0].status not in FINAL:
            log.warning("batch %s did not conclude; recovering it", batch_id)
            await self.recover_logged(*found)

    async def recover_logged(self, batch: BatchRecord, records: list[LegRecord]) -> None:
        """Recover one unfinished batch, then (no longer tracked: a kill or a shutdown does
        not wait for it) guard the legs it concluded NOT_PLACED against a late order."""
        ctx = self._accounts.context(batch.account)
        with self._late.watch(ctx, batch.batch_id, records) as late:
            await self._recover_retrying(batch, records, late)
            if ctx is not None and late is not None:
                await self._late.guard(ctx, late)

    async def _recover_retrying(
        self, batch: BatchRecord, records: list[LegRecord], late: LateWatch | None
    ) -> None:
        """A failed attempt (the broker unreachable, the day's token not loaded yet) is
        logged and retried with exponential backoff until one succeeds or the coordinator
        stops; each retry starts from what the store holds then, as a restart would, so
        nothing done by the failed attempt is done twice."""
        done = self.track(batch, records)
        batch_id = batch.batch_id
        backoff = Backoff(self._config.recovery_retry_initial_s,
                          self._config.recovery_retry_max_s)
        try:
            while True:
                try:
                    if done.failures:
                        found = await self._store.get_batch(batch_id)
                        if found is None or found[0].status in FINAL:
                            return
                        batch, records = found
                    status = await self._recover(batch, records, late)
                    if done.failures:
                        log.info("batch %s recovered (%s) after %d failed attempts", batch_id,
                                 status, done.failures)
                    return
                except Exception as exc:
                    if isinstance(exc, RollbackAborted) and not exc.fenced:
                        return  # shutdown or a lost account cut it short: logged as such
                    # fenced while this node owns the account: tried again as a failure is
                    done.failures += 1
                    self.failures += 1
                    self._accounts.changes.notify()
                    expected = isinstance(exc, (BrokerError, StoreError, UnknownOutcome,
                                                RollbackAborted))
                    log.warning("recovery of batch %s failed (attempt %d): %s: %s; %s", batch_id,
                                done.failures, type(exc).__name__, exc,
                                "it stays unfinished" if self.stopping
                                else f"retrying in {backoff.peek():.1f} s",
                                exc_info=not expected)
                if not self._accounts.owned(batch.account):
                    log.warning("batch %s: this node no longer owns account %s; its new owner "
                                "recovers the batch", batch_id, batch.account)
                    return
                if not self.stopping:
                    done.retrying = True
                    with trio.move_on_after(backoff.next()):
                        await self._retry_now.wait()
                    done.retrying = False
                    self._accounts.changes.notify()
                if self.stopping:
                    log.warning("batch %s: not recovered before the coordinator stopped; it "
                                "stays unfinished and the next start resumes it", batch_id)
                    return
        finally:
            if self._accounts.batches.get(batch_id) is done:
                del self._accounts.batches[batch_id]
            done.finish()

    async def _recover(
        self, batch: BatchRecord, records: list[LegRecord], late: LateWatch | None
    ) -> str | None:
        """Reconcile one unfinished batch with the broker by tag: success or rolled back."""
        ctx = self._accounts.context(batch.account)
        if ctx is None:
            log.error("batch %s: account %s is not configured", batch.batch_id, batch.account)
            return None
        return await recover(self._runner, ctx, batch, records, late)
