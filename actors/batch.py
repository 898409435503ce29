"""BatchCoordinator: multi-leg orders placed as one unit, at a broker with no atomic baskets.

"Atomic" here is about the position: every leg COMPLETE before the deadline, or everything undone
(open legs cancelled, filled quantity flattened by tagged reverse orders). Each step is written to
the store before the next one, every order carries a tag derived from the batch id, and a place
call that may have reached the broker is resolved by looking its tag up, never by re-posting: so
a crash, a timeout or a retried request never places twice, and recovery at start finds
everything by tag.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
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
from store import BatchRecord, IdempotencyConflict, LegRecord, Store, StoreError

from .account import AccountActor
from .instruments import DEFAULT_FREEZE_LIMITS, InstrumentCache
from .ratelimit import Priority, RateLimiter
from .validation import (
    EXCHANGES,
    BatchSpec,
    FieldError,
    InvalidRequest,
    LegSpec,
    SessionHours,
    validate_batch,
    validate_order,
)

log = logging.getLogger(__name__)

FINAL = frozenset({"success", "rolled_back", "partial", "rollback_failed"})
Reply = tuple[int, dict[str, Any]]
EventHook = Callable[[str, dict[str, Any]], None]
T = TypeVar("T")


@attrs.frozen
class BatchConfig:
    """Timeouts and limits of the coordinator; small values keep tests fast."""

    place_timeout_s: float = 3.0  # one shielded POST; beyond it the outcome is unknown
    lookup_timeout_s: float = 5.0  # one GET /orders resolving an unknown outcome
    poll_interval_s: float = 1.0  # GET /orders/{id} when no push arrives
    deadline_check_s: float = 0.25  # a last GET /orders/{id} this long before the deadline
    rollback_timeout_s: float = 15.0
    cleanup_grace_s: float = 2.0  # cancelling a reverse still open when the rollback times out
    reverse_attempts: int = 3
    market_protection: float = -1  # Kite: -1 automatic, 1..100 percent
    rate_per_s: float = 10.0
    rate_burst: int | None = None
    max_timeout_s: float = 60.0
    session: SessionHours | None = SessionHours()
    margin_check: bool = True
    freeze_limits: Mapping[str, int] = attrs.field(factory=lambda: dict(DEFAULT_FREEZE_LIMITS))
    store_timeout_s: float = 5.0
    idempotency_wait_s: float = 120.0


# -- legs and the order primitives -----------------------------------------------------


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


@attrs.define(eq=False)
class _Account:
    """What the coordinator keeps per account: its actor, rate limiter and instrument cache."""

    actor: AccountActor
    limiter: RateLimiter
    instruments: InstrumentCache
    running: dict[str, trio.CancelScope] = attrs.field(factory=dict)


@attrs.frozen
class _Job:
    account: str
    batch_id: str
    spec: BatchSpec
    legs: tuple[Leg, ...]


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
    ) -> None:
        self._store = store
        self._actors = actors
        self._config = config
        self._on_event = on_event
        self._accounts: dict[str, _Account] = {}
        self._done: dict[str, trio.Event] = {}
        self._jobs_send, self._jobs_receive = trio.open_memory_channel[_Job](64)
        self._started = False
        self.ops = OrderOps(store, config)
        self.counters = {"batches": 0, "rolled_back": 0, "rollback_failed": 0}

    @property
    def config(self) -> BatchConfig:
        return self._config

    @property
    def store(self) -> Store:
        return self._store

    # -- per account -------------------------------------------------------------------

    def account(self, account_id: str) -> _Account | None:
        actor = self._actors.get(account_id)
        if actor is None:
            return None
        ctx = self._accounts.get(account_id)
        if ctx is None or ctx.actor is not actor:
            ctx = _Account(
                actor,
                RateLimiter(self._config.rate_per_s, self._config.rate_burst),
                InstrumentCache(actor.broker, self._config.freeze_limits),
            )
            self._accounts[account_id] = ctx
        return ctx

    def limiter(self, account_id: str) -> RateLimiter | None:
        """The account's order-rate limiter, for any other code that writes orders."""
        ctx = self.account(account_id)
        return None if ctx is None else ctx.limiter

    # -- the actor's life --------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover unfinished batches, then run submitted batches until cancelled."""
        async with trio.open_nursery() as nursery:
            for batch, legs in await self._store.unfinished_batches():
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
        self, account: str, body: Any, idempotency_key: str | None, client: str = ""
    ) -> Reply:
        """Validate, pre-check margin, persist and execute a batch; the result as (status, dict)."""
        ctx = self.account(account)
        if ctx is None:
            return 404, _error("unknown_account", f"no account {account!r}")
        if not self._started:
            return 503, _error("unavailable", "the batch coordinator is not running")
        request_hash = _hash(body)
        if idempotency_key:
            found = await self._store.find_batch(account, idempotency_key)
            if found is not None:
                return await self._replay(found[0], request_hash)
        try:
            spec = await self._validate(ctx, body)
        except InvalidRequest as exc:
            return 422, _invalid(exc)
        except BrokerError as exc:
            return 503, _error("broker_unavailable", f"instrument master: {exc}")
        reply = await self._check_margin(ctx, spec)
        if reply is not None:
            return reply
        batch_id = new_batch_id()
        legs = tuple(
            Leg(n, tag_for(batch_id, n, "L", 0), self._request(leg, tag_for(batch_id, n, "L", 0)))
            for n, leg in enumerate(spec.legs)
        )
        now = time.time()
        record = BatchRecord(batch_id, account, idempotency_key, request_hash, body, "running",
                             None, now, now)
        done = self._done[batch_id] = trio.Event()
        try:
            with trio.CancelScope(shield=True):  # stored means dispatched
                await self._store.create_batch(record, [_leg_record(batch_id, leg) for leg in legs])
                await self._jobs_send.send(_Job(account, batch_id, spec, legs))
        except IdempotencyConflict as exc:
            del self._done[batch_id]
            return await self._replay(exc.existing, request_hash)
        except StoreError as exc:
            del self._done[batch_id]
            return 503, _error("store_unavailable", str(exc))
        log.info("batch %s of %s by %s: %d legs", batch_id, account, client, len(legs))
        await done.wait()
        return await self.get(account, batch_id)

    async def drain(self, grace_s: float) -> int:
        """Shutdown: refuse new batches, give running ones `grace_s` to finish or roll back.

        Returns how many were still running; cancelling `run` then cuts their legs, and a
        rollback that cannot finish stays stored unfinished for recovery at the next start.
        """
        self._started = False
        with trio.move_on_after(grace_s):
            while self._done:
                await next(iter(self._done.values())).wait()
        return len(self._done)

    async def get(self, account: str, batch_id: str) -> Reply:
        """The stored batch: its result when finished, its legs' progress while it runs."""
        found = await self._store.get_batch(batch_id)
        if found is None or found[0].account != account:
            return 404, _error("not_found", f"no batch {batch_id!r}")
        batch, legs = found
        if batch.status in FINAL and batch.result is not None:
            return 200, batch.result
        return 200, _progress(batch, legs)

    async def _replay(self, existing: BatchRecord, request_hash: str) -> Reply:
        """The same key again: the stored result (waiting while it runs); another body: 409."""
        if existing.request_hash != request_hash:
            return 409, _error("idempotency_conflict",
                               "this Idempotency-Key was used with a different body")
        done = self._done.get(existing.batch_id)
        with trio.move_on_after(self._config.idempotency_wait_s):
            if done is not None:
                await done.wait()
            while existing.status not in FINAL:
                await trio.sleep(0.1)  # running in a previous process: recovery finishes it
                found = await self._store.get_batch(existing.batch_id)
                if found is None:
                    break
                existing = found[0]
        return await self.get(existing.account, existing.batch_id)

    async def _validate(self, ctx: _Account, body: Any) -> BatchSpec:
        orders = body.get("orders") if isinstance(body, dict) else None
        await ctx.instruments.load(_exchanges(orders))
        return validate_batch(body, ctx.instruments.get, session=self._config.session,
                              max_timeout_s=self._config.max_timeout_s)

    async def _check_margin(self, ctx: _Account, spec: BatchSpec) -> Reply | None:
        if not self._config.margin_check:
            return None
        requests = [self._request(leg, None) for leg in spec.legs]
        broker = ctx.actor.broker
        try:
            margin = await broker.basket_margins(requests)
            available = margin.available
            if available is None and hasattr(broker, "available_funds"):
                available = await broker.available_funds()
        except OrderRejected as exc:
            return 422, _invalid(InvalidRequest([_field("orders", "broker", exc.message)]))
        except BrokerError as exc:
            return 503, _error("broker_unavailable", f"margin check: {exc}")
        if available is not None and margin.final > available + 1e-6:
            message = f"the basket needs {margin.final:.2f} margin, {available:.2f} is available"
            return 422, _invalid(InvalidRequest([_field("orders", "margin", message)]))
        return None

    def _request(self, leg: LegSpec, tag: str | None) -> OrderRequest:
        protection = leg.market_protection
        if leg.order_type in ("MARKET", "SL-M") and protection is None:
            protection = self._config.market_protection
        return OrderRequest(
            leg.tradingsymbol, leg.exchange, leg.transaction_type, leg.order_type, leg.quantity,
            leg.product, price=leg.price, trigger_price=leg.trigger_price,
            validity=leg.validity, tag=tag, market_protection=protection,
        )

    # -- execution ---------------------------------------------------------------------

    async def _execute(self, job: _Job) -> None:
        """Run one batch to a final, stored result. Shutdown cancels its legs, not its rollback."""
        ctx = self.account(job.account)
        assert ctx is not None
        started = trio.current_time()
        deadline = started + job.spec.timeout_s
        try:
            await self._place_legs(ctx, job, deadline)
        except Exception:
            log.exception("batch %s: placing its legs crashed", job.batch_id)
        finally:
            with trio.CancelScope(shield=True):
                try:
                    status = await self._conclude(ctx, job, deadline)
                    await self._finish(job.account, job.batch_id, job.legs, status,
                                       trio.current_time() - started)
                except Exception:
                    log.exception("batch %s: could not conclude; recovery will", job.batch_id)
                finally:
                    done = self._done.pop(job.batch_id, None)
                    if done is not None:
                        done.set()

    async def _place_legs(self, ctx: _Account, job: _Job, deadline: float) -> None:
        """All legs concurrently under one deadline (hedge_first: BUY legs, then SELL legs)."""
        with trio.CancelScope(deadline=deadline) as scope:
            ctx.running[job.batch_id] = scope
            try:
                first = [leg for leg in job.legs if job.spec.execution == "parallel"
                         or leg.request.transaction_type == "BUY"]
                async with trio.open_nursery() as nursery:
                    for leg in first:
                        nursery.start_soon(self._leg, ctx, job.batch_id, leg, scope, deadline)
                if all(leg.complete for leg in first):
                    async with trio.open_nursery() as nursery:
                        for leg in job.legs:
                            if leg not in first:
                                nursery.start_soon(
                                    self._leg, ctx, job.batch_id, leg, scope, deadline
                                )
            finally:
                del ctx.running[job.batch_id]

    async def _conclude(self, ctx: _Account, job: _Job, deadline: float) -> str:
        # A leg cancelled while its order was working may have filled meanwhile: ask the broker.
        async with trio.open_nursery() as nursery:
            for leg in job.legs:
                if leg.sent and not leg.is_final:
                    nursery.start_soon(self._settle_view, ctx, job.batch_id, leg)
        timed_out = trio.current_time() >= deadline
        for leg in job.legs:
            if not leg.complete and leg.error is None:
                if not leg.sent:
                    leg.error = "not placed: the batch failed first"
                elif timed_out:
                    leg.error = "not COMPLETE by the deadline"
                else:
                    leg.error = "stopped: another leg failed"
        if all(leg.complete for leg in job.legs):
            return "success"
        if not job.spec.rollback_on_failure:
            return "partial"
        return await self._rollback(ctx, job.batch_id, job.legs)

    async def _settle_view(self, ctx: _Account, batch_id: str, leg: Leg) -> None:
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
        self, ctx: _Account, batch_id: str, leg: Leg, scope: trio.CancelScope, deadline: float
    ) -> None:
        try:
            with ctx.actor.watch(leg.tag) as updates:
                await self.ops.send(ctx.actor, ctx.limiter, batch_id, leg, Priority.NORMAL,
                                    deadline)
                await self.ops.follow(ctx.actor, leg, updates, deadline)
            if not leg.complete and leg.error is None:
                leg.error = leg.status_message or f"leg ended {leg.status}"
        except OrderRejected as exc:
            leg.status, leg.error = "REJECTED", exc.message
        except UnknownOutcome as exc:
            leg.error = str(exc)
        except (BrokerError, StoreError) as exc:
            leg.error = f"{type(exc).__name__}: {exc}"
        finally:
            with trio.CancelScope(shield=True):
                await self.ops.save_leg(batch_id, leg)
        if not leg.complete:
            scope.cancel()

    async def _rollback(self, ctx: _Account, batch_id: str, legs: tuple[Leg, ...]) -> str:
        """Undo every leg, shielded from the batch's cancellation and from shutdown."""
        with trio.CancelScope(shield=True):
            await self._save_batch(batch_id, "rolling_back")
            deadline = trio.current_time() + self._config.rollback_timeout_s
            with trio.CancelScope(deadline=deadline + self._config.cleanup_grace_s):
                async with trio.open_nursery() as nursery:
                    for leg in legs:
                        nursery.start_soon(self._unwind, ctx, batch_id, leg, deadline)
        for leg in legs:
            if leg.rollback is None or leg.rollback["action"] == "in_progress":
                leg.rollback = {**(leg.rollback or {}), "action": "failed",
                                "remaining": max(leg.filled - leg.reverse_filled, 0),
                                "error": "the rollback ran out of time"}
        failed = any(leg.rollback and leg.rollback["action"] == "failed" for leg in legs)
        return "rollback_failed" if failed else "rolled_back"

    async def _unwind(self, ctx: _Account, batch_id: str, leg: Leg, deadline: float) -> None:
        try:
            await self.ops.unwind(ctx.actor, ctx.limiter, batch_id, leg, deadline)
        except Exception as exc:  # one leg's failure must not stop the others' rollback
            log.exception("rollback of %s failed", leg.tag)
            leg.rollback = {"action": "failed", "order_id": None, "status": None, "filled": 0,
                            "remaining": max(leg.filled - leg.reverse_filled, 0),
                            "error": f"{type(exc).__name__}: {exc}"}

    async def _finish(
        self, account: str, batch_id: str, legs: tuple[Leg, ...], status: str, elapsed: float
    ) -> dict[str, Any]:
        result = _result(batch_id, legs, status, elapsed)
        with trio.CancelScope(shield=True):
            await self._save_batch(batch_id, status, result)
        self.counters["batches"] += 1
        if status in ("rolled_back", "rollback_failed"):
            self.counters[status] += 1
        if status == "rollback_failed":
            log.error("batch %s of %s: rollback failed, exposure remains: %s", batch_id, account,
                      json.dumps(result.get("exposure")))
        if self._on_event is not None:
            self._on_event(f"batch.{status}", {"account": account, **result})
        return result

    async def _save_batch(self, batch_id: str, status: str, result: dict | None = None) -> None:
        try:
            with trio.fail_after(self._config.store_timeout_s):
                await self._store.update_batch(batch_id, status=status, result=result)
        except (StoreError, trio.TooSlowError):
            log.exception("could not store batch %s as %s", batch_id, status)

    # -- recovery ----------------------------------------------------------------------

    async def _recover_logged(self, batch: BatchRecord, records: list[LegRecord]) -> None:
        try:
            await self.recover(batch, records)
        except Exception:
            log.exception("recovery of batch %s failed; it stays unfinished", batch.batch_id)

    async def recover(self, batch: BatchRecord, records: list[LegRecord]) -> str | None:
        """Reconcile one unfinished batch with the broker by tag: success or rolled back."""
        ctx = self.account(batch.account)
        if ctx is None:
            log.error("batch %s: account %s is not configured", batch.batch_id, batch.account)
            return None
        listing = await ctx.actor.broker.orders()
        by_tag = {o.tag: o for o in listing if o.tag}
        listed = {o.order_id for o in listing}
        legs = tuple(Leg.from_record(r) for r in records if r.kind == "leg")
        for leg in legs:
            order = by_tag.get(leg.tag)
            if order is not None:
                leg.sent, leg.order_id = True, order.order_id
                leg.absorb(order)
        lost = [leg for leg in legs if leg.order_id and leg.order_id not in listed]
        reverses = [r for r in records if r.kind == "reverse"]
        if lost:
            for leg in lost:
                leg.error = "the broker no longer lists this order: handle it manually"
                leg.rollback = {"action": "failed", "order_id": None, "status": None,
                                "filled": 0, "remaining": None}
            status = "rollback_failed"
        elif batch.status == "running" and not reverses and all(leg.complete for leg in legs):
            status = "success"
        else:
            await self._settle_reverses(ctx, batch.batch_id, legs, reverses, by_tag)
            status = await self._rollback(ctx, batch.batch_id, legs)
        elapsed = max(time.time() - batch.created_at, 0.0)
        await self._finish(batch.account, batch.batch_id, legs, status, elapsed)
        return status

    async def _settle_reverses(
        self, ctx: _Account, batch_id: str, legs: tuple[Leg, ...], reverses: list[LegRecord],
        by_tag: Mapping[str, Any],
    ) -> None:
        """Reverse orders of an interrupted rollback: wait for (or cancel) them, count fills."""
        deadline = trio.current_time() + self._config.rollback_timeout_s
        for record in reverses:
            leg = legs[record.index % 100]
            leg.next_attempt = max(leg.next_attempt, record.index // 100)
            order = by_tag.get(record.tag)
            if order is None:
                continue
            reverse = Leg.from_record(record)
            reverse.sent, reverse.order_id = True, order.order_id
            reverse.absorb(order)
            if not reverse.is_final:
                with ctx.actor.watch(reverse.tag) as updates:
                    await self.ops.cancel_and_settle(ctx.actor, ctx.limiter, reverse, updates,
                                                     deadline)
            leg.reverse_filled += reverse.filled

    # -- single orders and the kill switch ---------------------------------------------

    async def place_single(self, account: str, body: Any, client: str = "") -> Reply:
        """One order, same validation, tagged, never re-posted blindly; no rollback."""
        ctx = self.account(account)
        if ctx is None:
            return 404, _error("unknown_account", f"no account {account!r}")
        try:
            exchange = body.get("exchange") if isinstance(body, dict) else None
            await ctx.instruments.load([exchange] if exchange in EXCHANGES else [])
            spec = validate_order(body, ctx.instruments.get, session=self._config.session)
        except InvalidRequest as exc:
            return 422, _invalid(exc)
        except BrokerError as exc:
            return 503, _error("broker_unavailable", f"instrument master: {exc}")
        tag = tag_for(new_batch_id(), 0, "S", 0)
        leg = Leg(0, tag, self._request(spec, tag))
        deadline = trio.current_time() + self._config.place_timeout_s * 3
        try:
            await self.ops.send(ctx.actor, ctx.limiter, None, leg, Priority.NORMAL, deadline)
        except OrderRejected as exc:
            return 400, _error("rejected", exc.message)
        except UnknownOutcome as exc:
            return 504, {**_error("unknown_outcome", str(exc)), "tag": tag}
        except BrokerError as exc:
            return 502, {**_error("broker_unavailable", str(exc)), "tag": tag}
        log.info("order %s (%s) of %s by %s", leg.order_id, tag, account, client)
        return 200, {"order_id": leg.order_id, "tag": tag}

    async def cancel_order(self, account: str, order_id: str, client: str = "") -> Reply:
        ctx = self.account(account)
        if ctx is None:
            return 404, _error("unknown_account", f"no account {account!r}")
        try:
            await self.ops.write(ctx.limiter, Priority.NORMAL, ctx.actor.broker.cancel, order_id,
                                 deadline=trio.current_time() + self._config.place_timeout_s)
        except OrderRejected as exc:
            return 400, _error("rejected", exc.message)
        except BrokerError as exc:
            return 502, _error("broker_unavailable", str(exc))
        log.info("cancel %s of %s by %s", order_id, account, client)
        return 200, {"order_id": order_id}

    async def kill(self, account: str, client: str = "") -> Reply:
        """Stop running batches (they roll back), cancel every open order, flatten positions."""
        from .kill import kill_account

        ctx = self.account(account)
        if ctx is None:
            return 404, _error("unknown_account", f"no account {account!r}")
        waits = []
        for batch_id, scope in list(ctx.running.items()):
            scope.cancel()
            if batch_id in self._done:
                waits.append(self._done[batch_id])
        with trio.move_on_after(self._config.rollback_timeout_s + self._config.cleanup_grace_s):
            for event in waits:
                await event.wait()
        report = await kill_account(self, ctx, account, client)
        return 200, report


# -- results ---------------------------------------------------------------------------


def _result(batch_id: str, legs: tuple[Leg, ...], status: str, elapsed: float) -> dict[str, Any]:
    succeeded = sum(1 for leg in legs if leg.complete)
    exposure = [
        {"index": leg.index, "tradingsymbol": leg.request.tradingsymbol,
         "exchange": leg.request.exchange, "product": leg.request.product,
         "transaction_type": leg.request.transaction_type,
         "quantity": leg.rollback.get("remaining"),
         "open_order_ids": leg.rollback.get("open_order_ids", [])}
        for leg in legs
        if leg.rollback and leg.rollback["action"] == "failed"
    ]
    result: dict[str, Any] = {
        "status": status,
        "batch_id": batch_id,
        "total_orders": len(legs),
        "succeeded": succeeded,
        "failed": len(legs) - succeeded,
        "order_ids": [leg.order_id for leg in legs if leg.order_id],
        "legs": [leg.as_result() for leg in legs],
        "duration_ms": round(elapsed * 1000, 1),
    }
    if exposure:
        result["exposure"] = exposure
    return result


def _progress(batch: BatchRecord, records: list[LegRecord]) -> dict[str, Any]:
    legs = [r for r in records if r.kind == "leg"]
    return {
        "status": batch.status,
        "batch_id": batch.batch_id,
        "total_orders": len(legs),
        "order_ids": [r.order_id for r in legs if r.order_id],
        "legs": [
            {"index": r.index, "order_id": r.order_id, "tag": r.tag, "status": r.status,
             **{k: r.detail.get(k) for k in ("filled_quantity", "average_price", "error")}}
            for r in legs
        ],
        "duration_ms": round(max(time.time() - batch.created_at, 0.0) * 1000, 1),
    }


def _leg_record(batch_id: str, leg: Leg) -> LegRecord:
    return LegRecord(batch_id, leg.index, leg.tag, "PENDING", None, attrs.asdict(leg.request), {})


def _hash(body: Any) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _exchanges(orders: Any) -> list[str]:
    if not isinstance(orders, list):
        return []
    return [o["exchange"] for o in orders if isinstance(o, dict) and o.get("exchange") in EXCHANGES]


def _field(path: str, rule: str, message: str) -> FieldError:
    return FieldError(path, rule, message)


def _invalid(exc: InvalidRequest) -> dict[str, Any]:
    return {**_error("invalid_request", "the request is invalid; nothing was placed"),
            "fields": [f.as_dict() for f in exc.fields]}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": code, "message": message}

