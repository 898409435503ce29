"""Running one batch: every leg concurrently under one deadline, then success or a rollback.

A leg succeeds only when COMPLETE; its first failure cancels the batch's scope. The rollback runs
shielded from that cancellation and from the client hanging up, every leg unwound concurrently
within `rollback_timeout_s` (plus `cleanup_grace_s` to cancel a reverse still working). The final
status is written through `StoreWrites` (retried until stored) and waited for up to
`store_timeout_s`; the answer is the outcome the batch reached, from memory, never read back
from a store that may be behind (`unstored` holds it until the write lands). A `success` is
answered earlier still, the moment its last leg is COMPLETE (`answer.py`).

Shutdown's grace is binding: once it is over, `abort()` cancels every conclusion and rollback
(their shielded scopes are kept in a registry for that). Each place/cancel call inside stays
shielded with its own timeout and its outcome is stored, so nothing the broker may have accepted
is abandoned mid-flight; the batch keeps its unfinished status (`running` or `rolling_back`), no
final status is written, and recovery at the next start resumes it (reverse orders are found by
their `R` tags, so nothing is flattened twice).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import trio

from brokers.base import BrokerError, OrderRejected
from store import Store, StoreError

from ..outcomes import BatchResult, as_json
from .accounts import AccountContext, Accounts, Job
from .answer import AnswerHook, EarlyAnswer, send_absorbing
from .config import BatchConfig
from .legs import Leg, first_wave
from .placing import OrderOps, UnknownOutcome
from .results import Plan, batch_result, left_behind
from .rollback import Rollback, cut_short, failed
from .writes import StoreWrites

log = logging.getLogger("actors.batch")  # the coordinator's log, as before the split

EventHook = Callable[[str, dict[str, Any]], None]


class RollbackAborted(Exception):
    """Shutdown's grace ran out during a batch's rollback: it stays stored unfinished, for
    recovery at the next start. Already logged (warning) with what was left. `fenced`
    ([cluster]): the fence kept its reverse orders from being sent to the end while this
    node still owned the account (its lease renewed too late each time): recovery tries again."""

    def __init__(self, batch_id: str, *, fenced: bool = False) -> None:
        super().__init__(batch_id)
        self.fenced = fenced


class BatchRunner:
    """Executes batches and rolls them back for the coordinator (and for recovery); it owns the
    outcome counters. Batch state lives in the legs of one job, each leg with one owner task."""

    def __init__(
        self, store: Store, config: BatchConfig, ops: OrderOps, rollback: Rollback,
        writes: StoreWrites, on_event: EventHook | None,
        owned: Callable[[str], bool] = lambda account: True,
    ) -> None:
        """`owned` ([cluster]): whether this node still owns an account; a rollback stops
        once it does not, leaving the batch to the next owner's recovery."""
        self._owned = owned
        self._store = store
        self._config = config
        self._on_event = on_event
        self.ops = ops
        self._rollback = rollback
        self._writes = writes
        # Finished batches whose final status is not stored yet: account and result, by id.
        self._unstored: dict[str, tuple[str, BatchResult]] = {}
        self.counters = {"batches": 0, "rolled_back": 0, "rollback_failed": 0}
        # The shielded scopes of conclusions and rollbacks in progress: `abort()` cancels them.
        self._shielded: set[trio.CancelScope] = set()
        self._aborted = False

    def abort(self) -> int:
        """Shutdown past its grace: cut every conclusion and rollback short, now and from now
        on. Calls in flight finish (each is shielded with its own timeout) and are stored; the
        batches stay unfinished for recovery. How many scopes were cancelled."""
        self._aborted = True
        for scope in self._shielded:
            scope.cancel()
        return len(self._shielded)

    @contextmanager
    def abortable(self) -> Iterator[trio.CancelScope]:
        """A shielded scope (from the batch's cancellation, the client, shutdown) that `abort()`
        can still cancel: cancelling a shielded scope directly does cancel what runs in it."""
        with trio.CancelScope(shield=True) as scope:
            if self._aborted:
                scope.cancel()
            self._shielded.add(scope)
            try:
                yield scope
            finally:
                self._shielded.discard(scope)

    @property
    def config(self) -> BatchConfig:
        return self._config

    def unstored(self, account: str, batch_id: str) -> BatchResult | None:
        """The result of a finished batch of `account` whose final status is not stored yet."""
        found = self._unstored.get(batch_id)
        return found[1] if found is not None and found[0] == account else None

    async def execute_tracked(self, accounts: Accounts, job: Job) -> BatchResult | None:
        """`execute` a submitted batch as tracked work: the kill switch can stop it before it
        places anything, and its `Work` gets the result and is finished. None: it did not
        conclude (see `execute`)."""
        result = None
        ctx = accounts.context(job.account)
        assert ctx is not None

        def answer(early: BatchResult) -> None:  # every leg COMPLETE: `answer.py`
            self._unstored[job.batch_id] = (job.account, early)
            if work is not None:
                work.result = early
                work.answered.set()

        work = None
        try:
            # The kill switch cancels this scope: a batch dispatched but not yet placing (not
            # in `ctx.running` yet) is stopped as well. Its rollback is shielded from it.
            with trio.CancelScope() as scope:
                work = accounts.batches.get(job.batch_id)
                if work is not None:
                    work.scope = scope
                if job.account in accounts.killing:
                    ctx.killed.add(job.batch_id)
                    scope.cancel()
                result = await self.execute(ctx, job, answer)
            if work is not None:
                work.result = result
        finally:
            ctx.killed.discard(job.batch_id)
            work = accounts.batches.pop(job.batch_id, None)
            if work is not None:
                work.finish()
        return result

    async def execute(
        self, ctx: AccountContext, job: Job, on_answer: AnswerHook | None = None
    ) -> BatchResult | None:
        """Run one batch to a final result (None: cut short, or it crashed; recovery finishes
        it). Cancelling it cuts its legs, not its rollback; only `abort()` (shutdown past its
        grace) cuts that, leaving it unfinished. `on_answer`: its `success` as soon as every
        leg is COMPLETE, before the rest is stored (`answer.py`)."""
        result = None
        started = trio.current_time()
        deadline = started + job.spec.timeout_s
        plan = Plan(job.spec.execution, job.spec.execution_reason)
        early = EarlyAnswer(job.batch_id, job.legs, started, plan, on_answer)
        try:
            await self._place_legs(ctx, job, deadline, early)
        except Exception:
            log.exception("batch %s: placing its legs crashed", job.batch_id)
        finally:
            undo = job.spec.rollback_on_failure and not all(leg.complete for leg in job.legs)
            with self.abortable() as scope, ctx.limiter.undoing() if undo else nullcontext():
                try:
                    status = await self._conclude(ctx, job, deadline)
                    result = await self.finish(job.account, job.batch_id, job.legs, status,
                                               trio.current_time() - started, plan,
                                               answered=early.result)
                except RollbackAborted:
                    pass  # logged with what was left
                except Exception:
                    log.exception("batch %s: could not conclude; recovery will", job.batch_id)
            if scope.cancelled_caught:  # cut before its rollback began
                self.log_left(job.batch_id, job.legs, "before its rollback began")
        return result

    async def _place_legs(
        self, ctx: AccountContext, job: Job, deadline: float, early: EarlyAnswer
    ) -> None:
        """All legs concurrently under one deadline (hedge_first: BUY legs, then SELL legs)."""
        with trio.CancelScope(deadline=deadline) as scope:
            ctx.running[job.batch_id] = scope
            try:
                first = first_wave(job.spec.execution, job.legs)
                async with trio.open_nursery() as nursery:
                    for leg in first:
                        nursery.start_soon(self._leg, ctx, job, leg, scope, deadline, early)
                if all(leg.complete for leg in first):
                    async with trio.open_nursery() as nursery:
                        for leg in job.legs:
                            if leg not in first:
                                nursery.start_soon(self._leg, ctx, job, leg, scope, deadline,
                                                   early)
            finally:
                del ctx.running[job.batch_id]

    async def _conclude(self, ctx: AccountContext, job: Job, deadline: float) -> str:
        # A leg cancelled while its order was working may have filled meanwhile: ask the broker.
        async with trio.open_nursery() as nursery:
            for leg in job.legs:
                if leg.sent and not leg.is_final:
                    nursery.start_soon(self._settle_view, ctx, job.batch_id, leg)
        timed_out = trio.current_time() >= deadline
        killed = job.batch_id in ctx.killed
        for leg in job.legs:
            if not leg.complete and leg.error is None:
                if killed:
                    leg.error = ("stopped by the kill switch" if leg.sent
                                 else "not placed: stopped by the kill switch")
                elif not leg.sent:
                    leg.error = "not placed: the batch failed first"
                elif timed_out:
                    leg.error = "not COMPLETE by the deadline"
                else:
                    leg.error = "stopped: another leg failed"
        if all(leg.complete for leg in job.legs):
            return "success"
        if not job.spec.rollback_on_failure:
            await self._stop_legs(ctx, job.batch_id, job.legs)
            return "success" if all(leg.complete for leg in job.legs) else "partial"
        return await self.rollback(ctx, job.batch_id, job.legs, job.spec.execution)

    async def _stop_legs(self, ctx: AccountContext, batch_id: str, legs: tuple[Leg, ...]) -> None:
        """`partial` (no rollback): cancel and settle every leg that is not final and record
        its final fill; nothing is flattened. A leg whose POST had an unknown outcome is
        watched by its tag meanwhile; one still working (or not found) is named in its error."""
        deadline = trio.current_time() + self._config.rollback_timeout_s
        with trio.CancelScope(deadline=deadline + self._config.cleanup_grace_s):
            async with trio.open_nursery() as nursery:
                for leg in legs:
                    if leg.sent and not leg.is_final:
                        nursery.start_soon(self._stop_leg, ctx, batch_id, leg, deadline)
        for leg in legs:
            if leg.unknown:
                leg.error = (f"{leg.error or 'placing it failed'}; its outcome is unknown: no "
                             f"order tagged {leg.tag} appeared, it may still land")
            elif leg.order_id is not None and not leg.is_final:
                leg.error = (f"{leg.error or 'failed'}; order {leg.order_id} is still "
                             f"{leg.status} after its cancel")

    async def _stop_leg(
        self, ctx: AccountContext, batch_id: str, leg: Leg, deadline: float
    ) -> None:
        try:
            with ctx.actor.watch(leg.tag) as updates:
                await self.ops.settle(ctx.actor, ctx.limiter, batch_id, leg, updates, deadline)
        except Exception:  # one leg's failure must not stop the others'
            log.exception("stopping %s failed", leg.tag)

    async def _settle_view(self, ctx: AccountContext, batch_id: str, leg: Leg) -> None:
        if leg.order_id is None:
            try:
                order = await self.ops.lookup(ctx.actor, leg.tag)
            except UnknownOutcome:
                return
            if order is None:
                return
            leg.order_id = order.order_id
        await self.ops.refresh(ctx.actor, leg)
        await self.ops.save_leg(batch_id, leg)

    async def _leg(
        self, ctx: AccountContext, job: Job, leg: Leg, scope: trio.CancelScope, deadline: float,
        early: EarlyAnswer,
    ) -> None:
        batch_id = job.batch_id
        try:
            with ctx.actor.watch(leg.tag) as updates:
                await send_absorbing(self.ops, ctx.actor, ctx.limiter, batch_id, leg, updates,
                                     deadline, written_ahead=leg.index in job.written_ahead,
                                     changed=early.check)
                await self.ops.follow(ctx.actor, leg, updates, deadline)
            early.check()
            if not leg.complete and leg.error is None:
                leg.error = leg.status_message or f"leg ended {leg.status}"
        except (BrokerError, StoreError, UnknownOutcome) as exc:
            if leg.order_id is not None:  # its push named the order first: its state stands
                log.error("batch %s: leg %s is order %s (%s), yet placing it said: %r",
                          batch_id, leg.tag, leg.order_id, leg.status, exc)
                if not leg.complete:  # failed, and undone as an order it is (cancelled...)
                    leg.error = f"{type(exc).__name__}: {exc}"
            elif isinstance(exc, OrderRejected):
                leg.status, leg.error = "REJECTED", exc.message
            elif isinstance(exc, UnknownOutcome):
                leg.error = str(exc)
            else:
                leg.error = f"{type(exc).__name__}: {exc}"
        finally:
            with trio.CancelScope(shield=True):
                await self.ops.save_leg(batch_id, leg)
        if not leg.complete:
            scope.cancel()

    async def rollback(
        self, ctx: AccountContext, batch_id: str, legs: tuple[Leg, ...],
        execution: str = "parallel",
    ) -> str:
        """Undo every leg, shielded from the batch's cancellation and the client hanging up.

        `hedge_first`: SELL legs are unwound first, then BUY legs, so the hedge is not removed
        while the short is still open; if a SELL leg's rollback fails, the BUY legs are
        cancelled and settled but their filled quantity is kept (the hedge), and named.

        Raises RollbackAborted when `abort()` cut it short, or ([cluster]) this node no longer
        owns the account (before or after it): no final status is decided, the batch stays
        stored `rolling_back` (or `running`, if it was cut before that was written) for
        recovery, by the next start or the account's next owner.
        """
        account = ctx.actor.account
        if not self._owned(account):
            self.log_left(batch_id, legs, "before its rollback began", owner_lost=True)
            raise RollbackAborted(batch_id)
        fenced = False
        with self.abortable() as scope, ctx.limiter.undoing():
            await self.save_batch(batch_id, "rolling_back")
            deadline = trio.current_time() + self._config.rollback_timeout_s
            with trio.CancelScope(deadline=deadline + self._config.cleanup_grace_s):
                if execution == "hedge_first":
                    sells = [leg for leg in legs if leg.request.transaction_type == "SELL"]
                    buys = [leg for leg in legs if leg not in sells]
                    fenced = await self._rollback.unwind_all(ctx, batch_id, sells, deadline)
                    hedged_failed = any(failed(leg) for leg in sells)
                    fenced |= await self._rollback.unwind_all(ctx, batch_id, buys, deadline,
                                                              flatten=not hedged_failed)
                else:
                    fenced = await self._rollback.unwind_all(ctx, batch_id, list(legs),
                                                             deadline)
        # Fenced to the end: the reverse orders were not sent, and not for lack of a market;
        # this node may not decide that the rollback failed (a recovery, here or on the next
        # owner, tries again).
        owner_lost = not self._owned(account) and not scope.cancelled_caught
        fenced = fenced and not (scope.cancelled_caught or owner_lost)
        if scope.cancelled_caught or owner_lost or fenced:
            self.log_left(batch_id, legs, "during its rollback", owner_lost=owner_lost,
                          fenced=fenced)
            raise RollbackAborted(batch_id, fenced=fenced)
        for leg in legs:
            if leg.rollback is None or leg.rollback["action"] == "in_progress":
                leg.rollback = cut_short(leg, "the rollback ran out of time")
                with trio.CancelScope(shield=True):
                    if leg.reverse is not None:
                        await self.ops.save_leg(batch_id, leg.reverse)
                    await self.ops.save_leg(batch_id, leg)
        return "rollback_failed" if any(failed(leg) for leg in legs) else "rolled_back"

    def log_left(
        self, batch_id: str, legs: tuple[Leg, ...], stage: str, *, owner_lost: bool = False,
        fenced: bool = False,
    ) -> None:
        """A warning naming what a batch cut short by shutdown (or, `owner_lost`, by this
        node losing the account) leaves for recovery."""
        parts = left_behind(legs)
        if fenced:
            log.warning("batch %s: cut short %s: the fence kept its reverse orders from being "
                        "sent (the lease was not renewed in time); it stays stored unfinished "
                        "and is recovered again. Legs: %s", batch_id, stage,
                        "; ".join(parts) or "none")
            return
        if owner_lost:
            log.warning("batch %s: cut short %s: this node no longer owns its account; it "
                        "stays stored unfinished and the account's new owner recovers it. "
                        "Legs: %s", batch_id, stage, "; ".join(parts) or "none")
            return
        log.warning("batch %s: cut short by shutdown %s (the grace is over); it stays stored "
                    "unfinished and recovery resumes it at the next start. Legs: %s",
                    batch_id, stage, "; ".join(parts) or "none")

    async def finish(
        self, account: str, batch_id: str, legs: tuple[Leg, ...], status: str, elapsed: float,
        plan: Plan, *, answered: BatchResult | None = None,
    ) -> BatchResult:
        """Store the final status and result (`answered`: the one already given, stored as
        given), count it and emit its event."""
        if answered is not None and answered.status == status:
            result = answered
        else:
            result = batch_result(batch_id, legs, status, elapsed, plan)
        self._unstored[batch_id] = (account, result)
        with trio.CancelScope(shield=True):
            if not await self.save_batch(batch_id, status, as_json(result),
                                         bound=self._config.store_timeout_s):
                log.warning("batch %s: its final status %s is not stored yet (the store is "
                            "slow); retried until it is", batch_id, status)
        self.counters["batches"] += 1
        if status in ("rolled_back", "rollback_failed"):
            self.counters[status] += 1
        if status == "rollback_failed":
            log.error("batch %s of %s: rollback failed, exposure remains: %s", batch_id, account,
                      json.dumps(as_json(result).get("exposure")))
        if self._on_event is not None:
            self._on_event(f"batch.{status}", {"account": account, **as_json(result)})
        return result

    async def amend(self, account: str, result: BatchResult, event: str | None = None) -> None:
        """A finished batch's result changed after the fact (a late order undone): stored
        (answered from memory until it is), and `event` emitted with it if given."""
        self._unstored[result.batch_id] = (account, result)
        with trio.CancelScope(shield=True):
            await self.save_batch(result.batch_id, result.status, as_json(result),
                                  bound=self._config.store_timeout_s)
        if event is not None and self._on_event is not None:
            self._on_event(event, {"account": account, **as_json(result)})

    async def save_batch(
        self, batch_id: str, status: str, result: dict | None = None, *, bound: float = 0.0
    ) -> bool:
        """Write the batch's status, retried until stored; True when stored within `bound`."""

        async def write() -> None:
            await self._store.update_batch(batch_id, status=status, result=result)
            if result is not None:
                self._unstored.pop(batch_id, None)

        return await self._writes.write((batch_id, None), write, bound)

