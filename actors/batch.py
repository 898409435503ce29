"""BatchCoordinator: multi-leg orders placed as one unit, at a broker with no atomic baskets.

"Atomic" here is about the position: every leg COMPLETE before the deadline, or everything undone
(open legs cancelled, filled quantity flattened by tagged reverse orders). Each step is written to
the store before the next one, every order carries a tag derived from the batch id, and a place
call that may have reached the broker is resolved by looking its tag up, never by re-posting: so
a crash, a timeout or a retried request never places twice, and recovery at start finds
everything by tag.

This module is the coordinator's public face (submit, get, single orders, the kill switch, the
per-account limiters); the work is done by its private parts: `_orders` (Leg and OrderOps, the
order primitives), `_execution` (one batch's legs and its rollback), `_recovery` (unfinished
batches at start), `_results` (answers and stored results) and `_config` (BatchConfig).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import attrs
import trio

from brokers.base import BrokerError, Order, OrderRejected, OrderRequest, TokenExpired
from brokers.kite import parse_order
from store import BatchRecord, LegRecord, Store, StoreError
from store import IdempotencyConflict as KeyStoredBefore

from ._admission import Load, admit
from ._config import BatchConfig
from ._execution import BatchRunner, EventHook, RollbackAborted, _Account, _Job
from ._orders import Leg, OrderOps, UnknownOutcome, new_batch_id, reverse_request, tag_for
from ._recovery import recover as recover_batch
from ._results import FINAL, _leg_record, _progress
from ._writes import LatencyHook, StoreWrites
from .account import AccountActor
from .budget import OrderBudget
from .errors import (
    AuthExpired,
    BatchNotFound,
    BrokerCallFailed,
    BrokerUnavailable,
    FieldError,
    IdempotencyConflict,
    InvalidRequest,
    KillRunning,
    MalformedRequest,
    Overloaded,
    Rejected,
    StoreUnavailable,
    Unavailable,
    UnknownAccount,
)
from .instruments import InstrumentCache
from .outcomes import (
    BatchProgress,
    BatchResult,
    CancelRequested,
    KillReport,
    OrderOutcomeUnknown,
    OrderPlaced,
    stored_result,
)
from .ratelimit import Priority
from .requests import BatchRequest, LegRequest
from .validation import BatchSpec, validate_batch, validate_order

__all__ = [
    "BatchConfig",
    "BatchCoordinator",
    "CoordinatorStatistics",
    "Leg",
    "OrderOps",
    "UnknownOutcome",
    "new_batch_id",
    "reverse_request",
    "single_tag",
    "tag_for",
]

log = logging.getLogger(__name__)

# Single orders placed with an Idempotency-Key remembered by this process (the oldest dropped
# beyond it); after a restart the account's order book, reconciled with the broker, stands in.
KEYED_ORDERS_KEPT = 10_000


def single_tag(account: str, idempotency_key: str) -> str:
    """The tag of a single order placed with `idempotency_key`: the same for every retry, so a
    retry finds the first order by its tag instead of placing another."""
    digest = hashlib.sha256(f"{account}\n{idempotency_key}".encode()).digest()
    return tag_for(base64.b32encode(digest).decode().lower()[:10], 0, "S", 0)


@attrs.define
class _Keyed:
    """A single order placed with an Idempotency-Key by this process."""

    request_hash: str
    order_id: str | None  # None: its outcome was unknown, and it was not found since


@attrs.define(eq=False)
class _Work:
    """A batch (from submission, or a recovery) or a single order, until it is finished: the
    kill switch waits for every one of its account's, and leaves their symbols alone if not."""

    account: str
    symbols: frozenset[tuple[str, str]]  # (exchange, tradingsymbol)
    done: trio.Event = attrs.field(factory=trio.Event)
    scope: trio.CancelScope | None = None  # a submitted batch's execution, once it started
    recovery: bool = False  # an unfinished batch of an earlier run, being recovered
    failures: int = 0  # failed recovery attempts
    retrying: bool = False  # waiting to retry its recovery after a failed attempt
    result: BatchResult | None = None  # the outcome it reached (None: cut short)
    legs: tuple[Leg, ...] = ()  # a submitted batch's

    def finish(self) -> None:
        self.done.set()


@attrs.frozen
class CoordinatorStatistics:
    """What `BatchCoordinator.statistics()` reports (for health and metrics)."""

    batches_running: int  # submitted batches not finished yet
    recoveries_pending: int  # unfinished batches of an earlier run not recovered yet
    recoveries_retrying: int  # of those, waiting for a retry after a failed attempt
    recovery_failures: int  # failed recovery attempts since start


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
    ) -> None:
        """`on_store_write`: the duration of each store write attempt of a batch;
        `on_refused`: the reason of each batch refused by admission control."""
        self._store = store
        self._on_refused = on_refused
        self._actors = actors
        self._config = config
        self._accounts: dict[str, _Account] = {}
        self._done: dict[str, _Work] = {}  # batch id -> an unfinished batch or recovery
        self._singles: dict[str, _Work] = {}  # tag -> a single order being placed
        self._keyed: OrderedDict[str, _Keyed] = OrderedDict()  # tag -> keyed single order
        self._killing: set[str] = set()  # accounts whose kill switch is running
        self._jobs_send, self._jobs_receive = trio.open_memory_channel[_Job](64)
        self._started = False
        self._stopping = False  # drain or abort: failed recoveries are not retried any more
        self._retry_now = trio.Event()  # wakes recoveries waiting for a retry
        self._recovery_failures = 0
        self._writes = StoreWrites(config.store_timeout_s, retry_max_s=config.store_retry_max_s,
                                   on_latency=on_store_write)
        self.ops = OrderOps(store, config, self._writes)
        self._runner = BatchRunner(store, config, self.ops, self._writes, on_event)

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
        tracked = list(self._done.values())
        recoveries = [work for work in tracked if work.recovery]
        return CoordinatorStatistics(
            batches_running=len(tracked) - len(recoveries),
            recoveries_pending=len(recoveries),
            recoveries_retrying=sum(1 for work in recoveries if work.retrying),
            recovery_failures=self._recovery_failures,
        )

    # -- per account -------------------------------------------------------------------

    def account(self, account_id: str) -> _Account | None:
        actor = self._actors.get(account_id)
        if actor is None:
            return None
        ctx = self._accounts.get(account_id)
        if ctx is None or ctx.actor is not actor:
            ctx = _Account(
                actor,
                OrderBudget(self._config.budget),
                InstrumentCache(actor.broker, self._config.freeze_limits,
                                self._config.instrument_refresh),
            )
            self._accounts[account_id] = ctx
        return ctx

    def killing(self, account_id: str) -> bool:
        """True while the account's kill switch runs: no new batch or order is accepted."""
        return account_id in self._killing

    def limiter(self, account_id: str) -> OrderBudget | None:
        """The account's order budget, for any other code that writes orders."""
        ctx = self.account(account_id)
        return None if ctx is None else ctx.limiter

    # -- the actor's life --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover unfinished batches (a failed recovery is retried with backoff), then run
        submitted batches until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self._writes.run)
            for batch, legs in await self._store.unfinished_batches():
                # Tracked from now, not from when its task first runs: a kill switch (or a
                # shutdown) right after start must already see it.
                self._track_recovery(batch, legs)
                nursery.start_soon(self._recover_logged, batch, legs)
            self._started = True
            task_status.started()
            try:
                async for job in self._jobs_receive:
                    nursery.start_soon(self._execute, job)
            finally:
                self._started = False

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
        ctx = self.account(account)
        if ctx is None:
            raise UnknownAccount(account)
        if not self._started:
            raise Unavailable("the batch coordinator is not running")
        if idempotency_key:
            found = await self._store.find_batch(account, idempotency_key)
            if found is not None:
                return await self._replay(found[0], request_hash)
        if account in self._killing:
            raise _kill_running(account)
        if _parked(ctx):
            raise AuthExpired(account)
        try:
            spec = await self._validate(ctx, request)
        except TokenExpired as exc:
            raise AuthExpired(account) from exc
        except BrokerError as exc:
            raise BrokerUnavailable(f"instrument master: {exc}") from exc
        spec = await self._check_margin(ctx, spec)
        if account in self._killing:  # it began meanwhile; from here to tracked, no checkpoint
            raise _kill_running(account)
        refusal = admit(self._config, self._load(ctx, account, len(spec.legs)), len(spec.legs),
                        spec.timeout_s)
        if refusal is not None:
            if self._on_refused is not None:
                self._on_refused(refusal.reason)
            log.warning("batch of %s by %s refused (%s): %s", account, client, refusal.reason,
                        refusal.message)
            raise Overloaded(refusal.reason, refusal.message, refusal.retry_after_s)
        batch_id = new_batch_id()
        legs = tuple(
            Leg(n, tag_for(batch_id, n, "L", 0), self._request(leg, tag_for(batch_id, n, "L", 0)))
            for n, leg in enumerate(spec.legs)
        )
        now = time.time()
        record = BatchRecord(batch_id, account, idempotency_key, request_hash,
                             _as_run(request, spec), "running", None, now, now)
        work = self._done[batch_id] = _Work(
            account, frozenset((leg.exchange, leg.tradingsymbol) for leg in spec.legs),
            legs=legs)
        try:
            with trio.CancelScope(shield=True):  # stored means dispatched
                await self._store.create_batch(record, [_leg_record(batch_id, leg) for leg in legs])
                await self._jobs_send.send(_Job(account, batch_id, spec, legs))
        except KeyStoredBefore as exc:
            del self._done[batch_id]
            work.finish()
            return await self._replay(exc.existing, request_hash)
        except StoreError as exc:
            del self._done[batch_id]
            work.finish()
            raise StoreUnavailable(str(exc)) from exc
        log.info("batch %s of %s by %s: %d legs", batch_id, account, client, len(legs))
        await work.done.wait()
        if work.result is not None:  # the outcome reached, whether or not it is stored yet
            return work.result
        return await self.get(account, batch_id)

    def _load(self, ctx: _Account, account: str, legs: int) -> Load:
        """What is ahead of a new batch of `legs` legs of `account`: for admission control."""
        works = [work for work in self._done.values() if work.account == account]
        unsent = sum(1 for work in works for leg in work.legs
                     if not leg.sent and leg.status in ("PENDING", "PLACING"))
        ahead = unsent + ctx.limiter.statistics().waiting
        return Load(len(works), ahead, self._writes.latency_s, ctx.limiter.room(ahead + legs))

    async def drain(self, grace_s: float) -> int:
        """Shutdown: refuse new batches, give running ones `grace_s` to finish or roll back,
        then `abort()` whatever is left: the grace is binding.

        Returns how many were still running (or recovering). They wind down within one
        shielded call's timeout once `run` is cancelled, and stay stored unfinished for
        recovery at the next start.
        """
        self._started = False
        self._stop_retrying()
        with trio.move_on_after(grace_s):
            while self._done:
                await next(iter(self._done.values())).done.wait()
            await self._writes.idle()  # final statuses stored, while the grace lasts
        left = len(self._done)
        self.abort()
        return left

    def abort(self) -> None:
        """Cut every batch short, now and from now on: legs still being placed are cancelled
        and every conclusion or rollback (shielded from everything else) is aborted. A place or
        cancel call in flight finishes within its own timeout and is stored; nothing gets a
        final status, each batch stays unfinished (logged at warning level with what it left)
        and recovery resumes it at the next start."""
        self._started = False
        self._stop_retrying()
        for ctx in self._accounts.values():
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
        return _progress(batch, legs)

    async def _replay(
        self, existing: BatchRecord, request_hash: str
    ) -> BatchResult | BatchProgress:
        """The same key again: the stored result (waiting while it runs); another body: 409."""
        if existing.request_hash != request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used with a different body")
        work = self._done.get(existing.batch_id)
        with trio.move_on_after(self._config.idempotency_wait_s):
            if work is not None:
                await work.done.wait()
            while (existing.status not in FINAL
                   and self._runner.unstored(existing.account, existing.batch_id) is None):
                await trio.sleep(0.1)  # running in a previous process: recovery finishes it
                found = await self._store.get_batch(existing.batch_id)
                if found is None:
                    break
                existing = found[0]
        return await self.get(existing.account, existing.batch_id)

    async def _validate(self, ctx: _Account, request: BatchRequest | MalformedRequest) -> BatchSpec:
        orders = request.orders if isinstance(request, MalformedRequest) else enumerate(
            request.orders)
        await ctx.instruments.load(sorted({leg.exchange for _, leg in orders}))
        return validate_batch(request, ctx.instruments.get, session=self._config.session,
                              max_timeout_s=self._config.max_timeout_s,
                              contracts=ctx.instruments.contracts)

    async def _check_margin(self, ctx: _Account, spec: BatchSpec) -> BatchSpec:
        """The batch to run (`spec`, or hedge-first when it fits only hedged), or the refusal."""
        if not self._config.margin_check:
            return spec
        requests = [self._request(leg, None) for leg in spec.legs]
        broker = ctx.actor.broker
        found: dict[str, Any] = {}

        async def ask(name: str, call: Callable[[], Awaitable[Any]]) -> None:
            try:
                found[name] = await call()
            except BrokerError as exc:
                found[name] = exc

        # Both questions at once: a batch waits one round trip for its margin check, not two.
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
        if available is None:
            return spec
        if margin.final > available + 1e-6:
            message = f"the basket needs {margin.final:.2f} margin, {available:.2f} is available"
            raise InvalidRequest([FieldError("orders", "margin", message)])
        if spec.execution == "parallel" and margin.initial > available + 1e-6:
            # Parallel legs reach the broker in any order and each is margined as it arrives:
            # a SELL leg ahead of its hedge would be rejected after the others filled.
            shortfall = (f"the legs need {margin.initial:.2f} margin when each is priced on "
                         f"its own, {available:.2f} is available: the basket fits only hedged "
                         f"({margin.final:.2f})")
            if self._config.unhedged_parallel == "hedge_first":
                return attrs.evolve(spec, execution="hedge_first", execution_reason=(
                    f"{shortfall}; run hedge-first: the SELL legs are sent only once every "
                    "BUY leg is COMPLETE, so they get the hedge benefit"))
            message = (f"{shortfall}; use execution \"hedge_first\" so the BUY legs fill first "
                       "and the SELL legs get the hedge benefit")
            raise InvalidRequest([FieldError("execution", "margin", message)])
        return spec

    def _request(self, leg: OrderRequest, tag: str | None) -> OrderRequest:
        protection = leg.market_protection
        if leg.order_type in ("MARKET", "SL-M") and protection is None:
            protection = self._config.market_protection
        return attrs.evolve(leg, tag=tag, market_protection=protection)

    # -- execution and recovery ----------------------------------------------------------

    async def _execute(self, job: _Job) -> None:
        ctx = self.account(job.account)
        assert ctx is not None
        try:
            # The kill switch cancels this scope: a batch dispatched but not yet placing (not
            # in `ctx.running` yet) is stopped as well. Its rollback is shielded from it.
            with trio.CancelScope() as scope:
                work = self._done.get(job.batch_id)
                if work is not None:
                    work.scope = scope
                if job.account in self._killing:
                    ctx.killed.add(job.batch_id)
                    scope.cancel()
                result = await self._runner.execute(ctx, job)
            if work is not None:
                work.result = result
        finally:
            ctx.killed.discard(job.batch_id)
            work = self._done.pop(job.batch_id, None)
            if work is not None:
                work.finish()

    def _track_recovery(self, batch: BatchRecord, records: list[LegRecord]) -> _Work:
        # Tracked like a submitted batch: shutdown's drain and the kill switch wait for it.
        symbols = frozenset((str(r.request.get("exchange")), str(r.request.get("tradingsymbol")))
                            for r in records)
        return self._done.setdefault(batch.batch_id, _Work(batch.account, symbols,
                                                           recovery=True))

    def retry_recoveries(self) -> None:
        """Retry every recovery waiting after a failed attempt now (new credentials, say)."""
        self._retry_now.set()
        self._retry_now = trio.Event()

    def _stop_retrying(self) -> None:
        self._stopping = True
        self.retry_recoveries()  # those waiting give up now: the next start resumes them

    async def _recover_logged(self, batch: BatchRecord, records: list[LegRecord]) -> None:
        """Recover one unfinished batch. A failed attempt (the broker unreachable, the day's
        token not loaded yet) is logged and retried with exponential backoff until one
        succeeds or the coordinator stops; each retry starts from what the store holds then,
        as a restart would, so nothing done by the failed attempt is done twice."""
        done = self._track_recovery(batch, records)
        batch_id = batch.batch_id
        delay = self._config.recovery_retry_initial_s
        try:
            while True:
                try:
                    if done.failures:
                        found = await self._store.get_batch(batch_id)
                        if found is None or found[0].status in FINAL:
                            return
                        batch, records = found
                    status = await self.recover(batch, records)
                    if done.failures:
                        log.info("batch %s recovered (%s) after %d failed attempts", batch_id,
                                 status, done.failures)
                    return
                except RollbackAborted:
                    return  # shutdown cut it short: logged with what was left
                except Exception as exc:
                    done.failures += 1
                    self._recovery_failures += 1
                    expected = isinstance(exc, (BrokerError, StoreError, UnknownOutcome))
                    log.warning("recovery of batch %s failed (attempt %d): %s: %s; %s", batch_id,
                                done.failures, type(exc).__name__, exc,
                                "it stays unfinished" if self._stopping
                                else f"retrying in {delay:.1f} s", exc_info=not expected)
                if not self._stopping:
                    done.retrying = True
                    with trio.move_on_after(delay):
                        await self._retry_now.wait()
                    done.retrying = False
                    delay = min(delay * 2, self._config.recovery_retry_max_s)
                if self._stopping:
                    log.warning("batch %s: not recovered before the coordinator stopped; it "
                                "stays unfinished and the next start resumes it", batch_id)
                    return
        finally:
            if self._done.get(batch_id) is done:
                del self._done[batch_id]
            done.finish()

    async def recover(self, batch: BatchRecord, records: list[LegRecord]) -> str | None:
        """Reconcile one unfinished batch with the broker by tag: success or rolled back."""
        ctx = self.account(batch.account)
        if ctx is None:
            log.error("batch %s: account %s is not configured", batch.batch_id, batch.account)
            return None
        return await recover_batch(self._runner, ctx, batch, records)

    # -- single orders and the kill switch ---------------------------------------------

    async def place_single(
        self, account: str, request: LegRequest | MalformedRequest, request_hash: str,
        client: str = "", idempotency_key: str | None = None,
    ) -> OrderPlaced | OrderOutcomeUnknown:
        """One order, same validation, tagged, never re-posted blindly; no rollback.

        With an `idempotency_key` the tag comes from (account, key): a retry returns the order
        the first attempt placed (found by its tag) and places nothing; the same key with
        another order is an IdempotencyConflict. An unknown outcome (the POST timed out or
        failed with a 5xx and no order carries the tag yet) answers OrderOutcomeUnknown with the
        tag, to be looked up, not retried blindly; with a key, a retry keeps answering so until
        the order is found."""
        ctx = self.account(account)
        if ctx is None:
            raise UnknownAccount(account)
        if account in self._killing:
            raise _kill_running(account)
        if _parked(ctx):
            raise AuthExpired(account)
        keyed = single_tag(account, idempotency_key) if idempotency_key else None
        if keyed is not None:
            reply = await self._single_replay(ctx, keyed, request_hash, request)
            if reply is not None:
                return reply
        try:
            malformed = isinstance(request, MalformedRequest)
            await ctx.instruments.load([] if malformed else [request.exchange])
            spec = validate_order(request, ctx.instruments.get, session=self._config.session,
                                  contracts=ctx.instruments.contracts)
        except TokenExpired as exc:
            raise AuthExpired(account) from exc
        except BrokerError as exc:
            raise BrokerUnavailable(f"instrument master: {exc}") from exc
        while keyed is not None and keyed in self._singles:  # the same key got in meanwhile
            reply = await self._single_replay(ctx, keyed, request_hash, request)
            if reply is not None:
                return reply
        tag = keyed or tag_for(new_batch_id(), 0, "S", 0)
        leg = Leg(0, tag, self._request(spec, tag))
        deadline = trio.current_time() + self._config.place_timeout_s * 3
        if account in self._killing:  # it began meanwhile; from here to tracked, no checkpoint
            raise _kill_running(account)
        work = self._singles[tag] = _Work(account, frozenset({(spec.exchange, spec.tradingsymbol)}))
        try:
            await self.ops.send(ctx.actor, ctx.limiter, None, leg, Priority.NORMAL, deadline)
        except OrderRejected as exc:
            raise Rejected(exc.message) from exc
        except TokenExpired as exc:  # refused by the broker: nothing was placed
            raise AuthExpired(account) from exc
        except UnknownOutcome as exc:
            log.warning("order %s of %s by %s: unknown outcome: %s", tag, account, client, exc)
            if keyed is not None:
                self._remember(tag, request_hash, None)
            return OrderOutcomeUnknown(tag, str(exc))
        except BrokerError as exc:
            raise BrokerCallFailed(str(exc), tag) from exc
        else:
            if keyed is not None:
                self._remember(tag, request_hash, leg.order_id)
        finally:
            del self._singles[tag]
            work.finish()
        log.info("order %s (%s) of %s by %s", leg.order_id, tag, account, client)
        return OrderPlaced(leg.order_id, tag)

    async def _single_replay(
        self, ctx: _Account, tag: str, request_hash: str, request: LegRequest | MalformedRequest
    ) -> OrderPlaced | OrderOutcomeUnknown | None:
        """A keyed single order placed before: its answer; None when there is none (place it).

        Waits for an attempt with the same key in flight. An order this process placed is
        answered from memory; otherwise the account's book (reconciled with the broker since
        the actor connected) tells whether an earlier process placed it; a retry of an unknown
        outcome, or a book that may be behind (upstream not connected), asks the broker."""
        work = self._singles.get(tag)
        if work is not None:
            with trio.move_on_after(self._config.idempotency_wait_s):
                await work.done.wait()
            if not work.done.is_set():
                return OrderOutcomeUnknown(tag, "an order with this Idempotency-Key is still "
                                                "being placed")
        known = self._keyed.get(tag)
        if known is not None and known.request_hash != request_hash:
            raise IdempotencyConflict("this Idempotency-Key was used with a different order")
        if known is not None and known.order_id is not None:
            return OrderPlaced(known.order_id, tag, replayed=True)
        order: Order | None
        if known is None and ctx.actor.upstream.state == "connected":
            payload = next((p for p in ctx.actor.orders() if p.get("tag") == tag), None)
            order = None if payload is None else parse_order(payload)
        else:
            try:
                order = await self.ops.lookup(ctx.actor, tag)
            except UnknownOutcome as exc:
                raise BrokerUnavailable(f"{exc}: an earlier order with this Idempotency-Key "
                                        "may exist; nothing was placed", tag) from exc
        if order is None:
            if known is None:
                return None
            return OrderOutcomeUnknown(tag, f"the order with this Idempotency-Key had an unknown "
                                      f"outcome and the broker lists no order tagged {tag} "
                                      "yet; nothing was placed again. Look it up by its tag; "
                                      "once sure it was not placed, use a new key")
        if not _same_order(request, order):
            raise IdempotencyConflict("this Idempotency-Key was used with a different order")
        self._remember(tag, request_hash, order.order_id)
        return OrderPlaced(order.order_id, tag, replayed=True)

    def _remember(self, tag: str, request_hash: str, order_id: str | None) -> None:
        self._keyed[tag] = _Keyed(request_hash, order_id)
        self._keyed.move_to_end(tag)
        while len(self._keyed) > KEYED_ORDERS_KEPT:
            self._keyed.popitem(last=False)

    async def cancel_order(
        self, account: str, order_id: str, client: str = ""
    ) -> CancelRequested:
        ctx = self.account(account)
        if ctx is None:
            raise UnknownAccount(account)
        if _parked(ctx):
            raise AuthExpired(account)
        try:
            await self.ops.write(ctx.limiter, Priority.NORMAL, ctx.actor.broker.cancel, order_id,
                                 deadline=trio.current_time() + self._config.place_timeout_s)
        except OrderRejected as exc:
            raise Rejected(exc.message) from exc
        except TokenExpired as exc:
            raise AuthExpired(account) from exc
        except BrokerError as exc:
            raise BrokerCallFailed(str(exc)) from exc
        log.info("cancel %s of %s by %s", order_id, account, client)
        return CancelRequested(order_id)

    async def kill(self, account: str, client: str = "") -> KillReport:
        """Stop the account's batches and wait for every unfinished one (and every recovery and
        single order being placed) to finish, then cancel every open order and flatten every
        position. New batches and orders of the account are refused (KillRunning) meanwhile. A batch
        still unfinished when the wait runs out is left to finish its own rollback: the kill
        switch leaves its symbols alone and names it in the report (status "incomplete"). The
        report names the batches it stopped (`stopped_batches`, with their final status)."""
        from .kill import kill_account

        ctx = self.account(account)
        if ctx is None:
            raise UnknownAccount(account)
        if account in self._killing:
            raise KillRunning(f"the kill switch of account {account!r} is already running")
        self._killing.add(account)
        self.retry_recoveries()  # a recovery waiting for a retry: now, before the wait runs out
        try:
            # Shielded as a whole: a client hanging up must not stop a kill switch half way.
            with trio.CancelScope(shield=True):
                stopped = {key: work for key, work in self._done.items()
                           if work.account == account and not work.recovery}
                ctx.killed.update(stopped)  # their legs say so, in results and webhooks
                for scope in list(ctx.running.values()):
                    scope.cancel()
                for work in self._unfinished(account).values():
                    if work.scope is not None:
                        work.scope.cancel()
                with trio.move_on_after(self._config.kill_wait):
                    while unfinished := self._unfinished(account):
                        await next(iter(unfinished.values())).done.wait()
                busy = {key: work.symbols for key, work in self._unfinished(account).items()}
                if busy:
                    log.error("kill switch of %s: still unfinished after %.1f s, left alone: %s",
                              account, self._config.kill_wait, sorted(busy))
                report = await kill_account(self, ctx, account, client, busy=busy,
                                            stopped=stopped)
        finally:
            self._killing.discard(account)
        return report

    def _unfinished(self, account: str) -> dict[str, _Work]:
        """The account's batches, recoveries and single orders not finished yet, by id/tag."""
        return {key: work for tracked in (self._done, self._singles)
                for key, work in tracked.items() if work.account == account}


def _as_run(request: BatchRequest, spec: BatchSpec) -> dict[str, Any]:
    """What is stored with a batch: its request, with the execution it runs with when the
    coordinator chose another (recovery unwinds it in that order)."""
    run = attrs.asdict(request)
    if spec.execution_reason is not None:
        run.update(execution=spec.execution, execution_reason=spec.execution_reason)
    return run


def _kill_running(account: str) -> KillRunning:
    return KillRunning(f"the kill switch of account {account!r} is running: no new orders "
                       "until it has finished")


def _parked(ctx: _Account) -> bool:
    """The account's actor knows the broker refuses its access token."""
    return ctx.actor.upstream.state == "auth_expired"


def _same_order(request: LegRequest | MalformedRequest, order: Order) -> bool:
    """Whether a found order is the one `request` asks for (instrument and side: the broker
    may have changed the rest, a modified quantity say)."""
    if isinstance(request, MalformedRequest):
        return False
    return all(str(getattr(request, name)).upper() == str(getattr(order, name)).upper()
               for name in ("tradingsymbol", "exchange", "transaction_type"))


def _raise_or(value: Any) -> Any:
    if isinstance(value, BrokerError):
        raise value
    return value
