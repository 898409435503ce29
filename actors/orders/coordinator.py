"""BatchCoordinator: multi-leg orders placed as one unit, at a broker with no atomic baskets.

"Atomic" here is about the position: every leg COMPLETE before the deadline, or everything undone
(open legs cancelled, filled quantity flattened by tagged reverse orders). Each step is written to
the store before the next one, every order carries a tag derived from the batch id, and a place
call that may have reached the broker is resolved by looking its tag up, never by re-posting: so
a crash, a timeout or a retried request never places twice, and recovery at start finds
everything by tag.

It submits, replays and drains batches; the rest of the order path is in modules of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import attrs
import trio

from store import BatchRecord, Store, StoreError
from store import IdempotencyConflict as KeyStoredBefore

from ..account import AccountActor
from ..budget import OrderBudget
from ..errors import (
    BatchNotFound,
    IdempotencyConflict,
    MalformedRequest,
    Overloaded,
    Unavailable,
    UnknownAccount,
)
from ..instruments import InstrumentCaches
from ..outcomes import (
    BasketMarginQuote,
    BatchProgress,
    BatchResult,
    CancelRequested,
    ExitReport,
    KillReport,
    OrderModified,
    OrderOutcomeUnknown,
    OrderPlaced,
    stored_result,
)
from ..requests import BatchRequest, ExitRequest, LegRequest, ModifyRequest
from .accounts import AccountContext, Accounts, Job, Work
from .admission import admit
from .checks import PreTrade
from .config import BatchConfig
from .execution import BatchRunner, EventHook
from .exits import PositionExits
from .fence import BrokerFence
from .intake import Intake
from .kill import KillSwitch
from .late_orders import LateOrders
from .legs import batch_legs, new_batch_id
from .modify import OrderModifier
from .placing import OrderOps
from .recovery import Recoveries
from .results import FINAL, batch_progress
from .rollback import Rollback
from .singles import SingleOrders
from .validation import BatchSpec
from .writes import LatencyHook, StoreWrites

__all__ = ["BatchCoordinator", "CoordinatorStatistics"]

log = logging.getLogger("actors.batch")


@attrs.frozen
class CoordinatorStatistics:
    """What `BatchCoordinator.statistics()` reports (for health and metrics)."""

    batches_running: int  # submitted batches not finished yet
    recoveries_pending: int  # unfinished batches of an earlier run not recovered yet
    recoveries_retrying: int  # of those, waiting for a retry after a failed attempt
    recovery_failures: int  # failed recovery attempts since start
    late_watching: int = 0  # legs recovery concluded NOT_PLACED, watched for a late order now
    late_orders: int = 0  # late orders found with such a leg's tag since start
    late_undone: int = 0  # of those, undone (cancelled or flattened) with nothing left


class BatchCoordinator:
    """One per process; `run()` owns the tasks of every batch, so a client hanging up never
    abandons one. Route handlers call `submit`, `get`, `place_single`, `cancel_order`, `kill`."""

    def __init__(
        self,
        store: Store,
        actors: Mapping[str, AccountActor],
        config: BatchConfig = BatchConfig(),
        *,
        on_event: EventHook | None = None,
        on_store_write: LatencyHook | None = None,
        on_refused: Callable[[str], None] | None = None,
        instruments: InstrumentCaches | None = None,
        owns: Callable[[str], bool] | None = None,
        fence: BrokerFence | None = None,
        on_late: Callable[[str], None] | None = None,
    ) -> None:
        """`on_store_write`: the duration of each store write attempt of a batch;
        `on_refused`: the reason of each batch refused by admission control; `instruments`:
        the masters, one per broker URL, shared with the page (made here when not given);
        `owns` ([cluster]): whether this node owns an account now (orders for one it does not
        own are refused); `fence` ([cluster]): may an order write for an account start now
        (its lease outlasts the call)? `on_late(account)`: an order landed late with the tag
        of a leg recovery had concluded NOT_PLACED (`late_orders.py`)."""
        self._store = store
        self._on_refused = on_refused
        self._config = config
        self._accounts = Accounts(actors, config, instruments or InstrumentCaches(
            config.freeze_limits, config.instrument_refresh), owns)
        self._jobs_send, self._jobs_receive = trio.open_memory_channel[Job](64)
        # [cluster]: accounts this node just took over, each with the event set once their
        # unfinished batches are tracked for recovery (`recover_account`).
        self._takeovers_send, self._takeovers_receive = trio.open_memory_channel[
            tuple[str, trio.Event]](max(1, len(actors)))
        self._started = False
        self._writes = StoreWrites(config.store_timeout_s, retry_max_s=config.store_retry_max_s,
                                   on_latency=on_store_write)
        self.ops = OrderOps(store, config, self._writes, fence)
        rollback = Rollback(self.ops, config)
        self._runner = BatchRunner(store, config, self.ops, rollback, self._writes, on_event,
                                   owned=self._accounts.owned)
        self._checks = PreTrade(config)
        self._intake = Intake(store, self._checks, self._accounts, self._jobs_send)
        self._late = LateOrders(self._accounts, self._runner, rollback, config, on_late)
        self._recoveries = Recoveries(store, self._accounts, self._runner, config, self._late)
        self._singles = SingleOrders(self._accounts, self.ops, config)
        self._modifier = OrderModifier(self._accounts, self.ops, store, config)
        self._kill = KillSwitch(self._accounts, rollback, store, config, get=self.get,
                                retry_recoveries=self.retry_recoveries)
        self._exits = PositionExits(self._accounts, rollback, config)

    @property
    def config(self) -> BatchConfig:
        return self._config

    @property
    def store(self) -> Store:
        return self._store

    @property
    def counters(self) -> dict[str, int]:
        """Batches finished, rolled back and failing to roll back, since start."""
        return self._runner.counters

    def statistics(self) -> CoordinatorStatistics:
        """Batches running and recoveries pending (a recovery that failed waits for a retry)."""
        tracked = list(self._accounts.batches.values())
        recoveries = [work for work in tracked if work.recovery]
        return CoordinatorStatistics(
            batches_running=len(tracked) - len(recoveries),
            recoveries_pending=len(recoveries),
            recoveries_retrying=sum(1 for work in recoveries if work.retrying),
            recovery_failures=self._recoveries.failures,
            late_watching=self._late.watching,
            late_orders=self._late.found,
            late_undone=self._late.undone,
        )

    async def statistics_until(
        self, check: Callable[[CoordinatorStatistics], bool]
    ) -> CoordinatorStatistics:
        """The statistics once `check` holds for them, looked at again after each change."""
        def met() -> CoordinatorStatistics | None:
            stats = self.statistics()
            return stats if check(stats) else None

        return await self._accounts.changes.until(met)

    def killing(self, account_id: str) -> bool:
        """True while the account's kill switch runs: no new batch or order is accepted."""
        return account_id in self._accounts.killing

    def limiter(self, account_id: str) -> OrderBudget | None:
        """The account's order budget, for any other code that writes orders."""
        ctx = self._accounts.context(account_id)
        return None if ctx is None else ctx.limiter

    def retry_recoveries(self) -> None:
        """Retry every recovery waiting after a failed attempt now (new credentials, say)."""
        self._recoveries.retry_now()

    # -- the actor's life --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover unfinished batches (a failed recovery is retried with backoff), then run
        submitted batches until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._writes.run)
            for batch, legs in await self._store.unfinished_batches():
                # Tracked from now, not from when its task first runs: a kill switch (or a
                # shutdown) right after start must already see it.
                self._recoveries.track(batch, legs)
                nursery.start_soon(self._recoveries.recover_logged, batch, legs)
            self._started = True
            nursery.start_soon(self._take_over, nursery)
            task_status.started()
            try:
                async for job in self._jobs_receive:
                    nursery.start_soon(self._execute, job)
            finally:
                self._started = False

    async def _execute(self, job: Job) -> None:
        """Run a submitted batch; one that did not conclude is recovered now if this node can
        (`Recoveries.resume`), not at the next start."""
        if await self._runner.execute_tracked(self._accounts, job) is None:
            await self._recoveries.resume(job.account, job.batch_id)

    def unfinished(self, account: str) -> int:
        """[cluster]: `account`'s batches, orders and takeover under way here (a handoff waits)."""
        return len(self._accounts.unfinished(account)) + (account in self._accounts.taking_over)

    def taking_over(self, account: str) -> None:
        """[cluster]: this node is taking `account` over: new batches and orders of it are
        refused (Unavailable) until `recover_account` has tracked what the previous owner left."""
        self._accounts.taking_over.add(account)

    async def recover_account(self, account: str) -> None:
        """[cluster]: this node has taken `account` over (its epoch claimed, its actor running):
        recover the batches the previous owner left unfinished, as a start does. Returns once
        they are tracked, not once they are recovered (new batches are accepted from then on, as
        after a start); waits while the coordinator is not running yet."""
        tracked = trio.Event()
        try:
            await self._takeovers_send.send((account, tracked))
            await tracked.wait()
        finally:
            self._accounts.taking_over.discard(account)

    async def _take_over(self, nursery: trio.Nursery) -> None:
        """Serve `recover_account`: each unfinished batch of the accounts not tracked yet gets
        a recovery task in `nursery` (the coordinator's own); one read for all those queued."""
        async for first in self._takeovers_receive:
            waiting = [first]
            while self._takeovers_receive.statistics().current_buffer_used:
                waiting.append(self._takeovers_receive.receive_nowait())
            accounts = {account for account, _ in waiting}
            try:
                found = await self._store.unfinished_batches()
            except StoreError as exc:
                log.warning("accounts %s taken over, but their unfinished batches could not be "
                            "read: %s; the next takeover or start recovers them", accounts, exc)
                found = []
            for batch, legs in found:
                if batch.account in accounts and batch.batch_id not in self._accounts.batches:
                    log.warning("batch %s of %s: left unfinished by the previous owner; "
                                "recovering it", batch.batch_id, batch.account)
                    self._recoveries.track(batch, legs)
                    nursery.start_soon(self._recoveries.recover_logged, batch, legs)
            for _, tracked in waiting:
                tracked.set()

    # -- batches -----------------------------------------------------------------------

    async def submit(
        self, account: str, request: BatchRequest | MalformedRequest, request_hash: str,
        idempotency_key: str | None, client: str = "",
    ) -> BatchResult | BatchProgress:
        """Validate, pre-check margin, persist and execute a batch: its result, whatever its
        status; a batch refused before anything was placed raises a `CoordinatorError`.

        `request_hash` identifies the body as sent (`body_hash`): the same key with another
        body is an IdempotencyConflict. A malformed body is refused here, after the checks
        that precede validation, as any invalid batch is."""
        ctx = self._accounts.context(account)
        if ctx is None:
            raise UnknownAccount(account)
        if not self._started:
            raise Unavailable("the batch coordinator is not running")
        if idempotency_key:
            found = await self._store.find_batch(account, idempotency_key)
            if found is not None:
                return await self._replay(found[0], request_hash)
        self._accounts.check_open(account, ctx)
        spec = await self._checks.validate(ctx, request)
        self._accounts.check_open(account)  # it began meanwhile? From here to tracked, no await
        self._admit(ctx, account, spec, client)
        batch_id = new_batch_id()
        legs = batch_legs(batch_id, spec.legs, self._config.market_protection)
        work = self._accounts.batches[batch_id] = Work(
            account, frozenset((leg.exchange, leg.tradingsymbol) for leg in spec.legs),
            legs=legs)
        try:
            await self._intake.store_while_checking(ctx, Job(account, batch_id, spec, legs),
                                                    request, request_hash, idempotency_key)
        except BaseException as exc:
            del self._accounts.batches[batch_id]
            work.finish()
            if isinstance(exc, KeyStoredBefore):
                return await self._replay(exc.existing, request_hash)
            raise
        log.info("batch %s of %s by %s: %d legs", batch_id, account, client, len(legs))
        await work.answered.wait()
        if work.result is not None:  # the outcome reached, whether or not it is stored yet
            return work.result
        return await self.get(account, batch_id)

    def _admit(self, ctx: AccountContext, account: str, spec: BatchSpec, client: str) -> None:
        """Overloaded (503) when the batch cannot start in time or fit the order budget."""
        load = self._accounts.load(ctx, account, len(spec.legs), self._writes.latency_s)
        refusal = admit(self._config, load, len(spec.legs), spec.timeout_s)
        if refusal is None:
            return
        if self._on_refused is not None:
            self._on_refused(refusal.reason)
        log.warning("batch of %s by %s refused (%s): %s", account, client, refusal.reason,
                    refusal.message)
        raise Overloaded(refusal.reason, refusal.message, refusal.retry_after_s)

    async def basket_margin(
        self, account: str, request: BatchRequest | MalformedRequest
    ) -> BasketMarginQuote:
        """What the batch would need (margin against funds, net premium), validated as
        `submit` validates it: nothing is placed or stored."""
        ctx = self._accounts.context(account)
        if ctx is None:
            raise UnknownAccount(account)
        return await self._checks.quote(ctx, await self._checks.validate(ctx, request))

    async def drain(self, grace_s: float) -> int:
        """Shutdown: refuse new batches, give running ones `grace_s` to finish or roll back,
        then `abort()` whatever is left: the grace is binding.

        Returns how many were still running (or recovering). They wind down within one
        shielded call's timeout once `run` is cancelled, and stay stored unfinished for
        recovery at the next start.
        """
        self._started = False
        self._recoveries.stop()
        with trio.move_on_after(grace_s):
            while self._accounts.batches:
                await next(iter(self._accounts.batches.values())).done.wait()
            await self._writes.idle()  # final statuses stored, while the grace lasts
        left = len(self._accounts.batches)
        self.abort()
        return left

    def abort(self) -> None:
        """Cut every batch short, now and from now on: legs still being placed are cancelled
        and every conclusion or rollback (shielded from everything else) is aborted. A place or
        cancel call in flight finishes within its own timeout and is stored; nothing gets a
        final status, each batch stays unfinished (logged at warning level with what it left)
        and recovery resumes it at the next start."""
        self._started = False
        self._recoveries.stop()
        for ctx in self._accounts.contexts():
            for scope in ctx.running.values():
                scope.cancel()
        self._runner.abort()

    async def get(self, account: str, batch_id: str) -> BatchResult | BatchProgress:
        """The batch's result when finished (from memory until its final status is stored),
        its stored legs' progress while it runs."""
        unstored = self._runner.unstored(account, batch_id)
        if unstored is not None:
            return unstored
        found = await self._store.get_batch(batch_id)
        if found is None or found[0].account != account:
            raise BatchNotFound(batch_id)
        batch, legs = found
        if batch.status in FINAL and batch.result is not None:
            return stored_result(batch.result)
        return batch_progress(batch, legs)

    async def _replay(
        self, existing: BatchRecord, request_hash: str
    ) -> BatchResult | BatchProgress:
        """The same key again: the stored result (waiting while it runs); another body: 409."""
        if existing.request_hash != request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used with a different body")
        work = self._accounts.batches.get(existing.batch_id)
        with trio.move_on_after(self._config.idempotency_wait_s):
            if work is not None:
                await work.answered.wait()
            while (existing.status not in FINAL
                   and self._runner.unstored(existing.account, existing.batch_id) is None):
                await trio.sleep(0.1)  # running in a previous process: recovery finishes it
                found = await self._store.get_batch(existing.batch_id)
                if found is None:
                    break
                existing = found[0]
        return await self.get(existing.account, existing.batch_id)

    # -- single orders and the kill switch ---------------------------------------------

    async def place_single(
        self, account: str, request: LegRequest | MalformedRequest, request_hash: str,
        client: str = "", idempotency_key: str | None = None,
    ) -> OrderPlaced | OrderOutcomeUnknown:
        """One order: see `singles.SingleOrders.place_single`."""
        return await self._singles.place_single(account, request, request_hash, client,
                                                idempotency_key)

    async def cancel_order(self, account: str, order_id: str, client: str = "") -> CancelRequested:
        return await self._singles.cancel_order(account, order_id, client)

    async def modify_order(
        self, account: str, order_id: str, request: ModifyRequest | MalformedRequest,
        client: str = "",
    ) -> OrderModified:
        """Modify one open order: see `modify.OrderModifier.modify_order`."""
        return await self._modifier.modify_order(account, order_id, request, client)

    async def kill(self, account: str, client: str = "") -> KillReport:
        """The account's kill switch: see `kill.KillSwitch.kill`."""
        return await self._kill.kill(account, client)

    async def exit_position(
        self, account: str, request: ExitRequest | MalformedRequest, request_hash: str,
        client: str = "", idempotency_key: str | None = None,
    ) -> ExitReport:
        """Flatten one position: see `exits.PositionExits.exit_position`."""
        return await self._exits.exit_position(account, request, request_hash, client,
                                               idempotency_key)
