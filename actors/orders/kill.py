"""The kill switch: cancel every open order of an account, then flatten every net position.

`KillSwitch.kill` first stops the account's batches and waits for every unfinished one (and
every recovery and single order being placed) to finish its rollback, refusing new ones
meanwhile; the symbols of one still unfinished when that wait
ran out are left alone (`busy`) and named in the report. Each position is flattened by the
rollback's own flatten (`Rollback.flatten_position`): rate-limited at rollback priority, tagged
reverse orders (`legs.kill_tag`) sliced by the freeze quantity, a marketable
LIMIT re-priced by modify where MARKET is refused or rests, each followed to its final state.
Slicing needs the instrument master; without it each position goes out as one order.

The report's status is "done" only when nothing is left: no position, no order still open (a
cancel or a flattening order not final by the deadline), no symbol left alone, no broker error;
otherwise "incomplete", naming what is left. When the positions cannot be read afterwards (an
expired token, say) `remaining` is "unknown" and `remaining_reason` says why: never an empty list
that would claim nothing is left.

`stopped_batches` names the batches the kill switch stopped, each with the final status it
reached, taken from the coordinator's memory (the store may lag behind it: a slow store must not
make the report say `running` for a batch that has rolled back). A stopped batch can still reach
`success` (its legs filled before their cancel landed) or leave fills (`partial`, a failed
rollback): the kill then flattens those positions, and the report says so on both sides, the
batch's entry naming the positions (`flattened`) and each flattened position naming the batches
(`batches`). The batch itself keeps its status: it did succeed, the kill closed it afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Set
from functools import partial

import attrs
import trio

from brokers.base import (
    FINAL_STATUSES,
    BrokerError,
    Order,
    OrderRequest,
    Position,
)
from store import AuditEntry, Store, StoreError

from ..errors import BatchNotFound, KillRunning, UnknownAccount
from ..outcomes import (
    BatchProgress,
    BatchResult,
    CancelledOrder,
    FlattenedPosition,
    FlattenOrder,
    HeldPosition,
    KillReport,
    StoppedBatch,
    Symbol,
    as_json,
)
from .accounts import AccountContext, Accounts, Work
from .config import BatchConfig
from .legs import Leg, kill_tag, new_batch_id
from .rollback import Rollback

log = logging.getLogger("actors.kill")

ReadBatch = Callable[[str, str], Awaitable[BatchResult | BatchProgress]]


class KillSwitch:
    """The kill switch of every account; what it needs of the rest of the order path is given
    to it, it never reaches into the coordinator."""

    def __init__(
        self, accounts: Accounts, rollback: Rollback, store: Store, config: BatchConfig,
        *, get: ReadBatch, retry_recoveries: Callable[[], None],
    ) -> None:
        """`get`: a batch's answer (the coordinator's `get`); `retry_recoveries`: wakes the
        recoveries waiting for a retry."""
        self.accounts = accounts
        self.rollback = rollback
        self.ops = rollback.ops
        self.store = store
        self.config = config
        self.get = get
        self._retry_recoveries = retry_recoveries

    async def kill(self, account: str, client: str = "") -> KillReport:
        """Stop the account's batches and wait for every unfinished one (and every recovery and
        single order being placed) to finish, then cancel every open order and flatten every
        position. New batches and orders of the account are refused (KillRunning) meanwhile. A
        batch still unfinished when the wait runs out is left to finish its own rollback: the
        kill switch leaves its symbols alone and names it in the report (status "incomplete").
        The report names the batches it stopped (`stopped_batches`, with their final status)."""
        accounts = self.accounts
        ctx = accounts.context(account)
        if ctx is None:
            raise UnknownAccount(account)
        accounts.check_owned(account)
        if account in accounts.killing:
            raise KillRunning(f"the kill switch of account {account!r} is already running")
        accounts.killing.add(account)
        self._retry_recoveries()  # a recovery waiting for a retry: now, before the wait ends
        try:
            # Shielded as a whole: a client hanging up must not stop a kill switch half way.
            with trio.CancelScope(shield=True):
                stopped = {key: work for key, work in accounts.batches.items()
                           if work.account == account and not work.recovery}
                ctx.killed.update(stopped)  # their legs say so, in results and webhooks
                for scope in list(ctx.running.values()):
                    scope.cancel()
                for work in accounts.unfinished(account).values():
                    if work.scope is not None:
                        work.scope.cancel()
                with trio.move_on_after(self.config.kill_wait):
                    while unfinished := accounts.unfinished(account):
                        await next(iter(unfinished.values())).done.wait()
                busy = {key: work.symbols for key, work in accounts.unfinished(account).items()}
                if busy:
                    log.error("kill switch of %s: still unfinished after %.1f s, left alone: %s",
                              account, self.config.kill_wait, sorted(busy))
                return await kill_account(self, ctx, account, client, busy=busy,
                                          stopped=stopped)
        finally:
            accounts.killing.discard(account)


async def kill_account(
    switch: KillSwitch, ctx: AccountContext, account: str, client: str,
    *, busy: Mapping[str, Set[tuple[str, str]]] | None = None,
    stopped: Mapping[str, Work] | None = None,
) -> KillReport:
    """Cancel, flatten, check; the report names what is left, if anything.

    `busy`: batches (or orders) still unfinished, by id, with their (exchange, tradingsymbol):
    their rollback owns those symbols, so their orders are not cancelled nor their positions
    flattened here. `stopped`: the batches the kill switch stopped, by id (finished by now,
    but for those in `busy`)."""
    config = switch.config
    deadline = trio.current_time() + config.rollback_timeout_s
    busy = busy or {}
    skip = {symbol for symbols in busy.values() for symbol in symbols}
    report = _Progress()
    with trio.CancelScope(shield=True):
        try:
            listing = await ctx.actor.broker.orders()
        except BrokerError as exc:
            listing = []
            report.errors.append(f"GET /orders: {exc}")
        async with trio.open_nursery() as nursery:
            for order in listing:
                if not order.is_final and (order.exchange, order.tradingsymbol) not in skip:
                    nursery.start_soon(_cancel, switch, ctx, order, deadline, report)
        kill_id = new_batch_id()
        try:
            positions = [p for p in await ctx.actor.broker.positions()
                         if p.quantity and (p.exchange, p.tradingsymbol) not in skip]
        except BrokerError as exc:
            positions = []
            report.errors.append(f"positions: {exc}")
        try:  # only for slicing by the freeze quantity: without it, one order per position
            await ctx.instruments.load({p.exchange for p in positions})
        except BrokerError as exc:
            report.warnings.append(f"instrument master: {exc}; positions not sliced")
        async with trio.open_nursery() as nursery:
            for n, position in enumerate(positions):
                nursery.start_soon(_flatten, switch, ctx, kill_id, n, position, deadline,
                                   report)
        remaining: list[HeldPosition] | str
        reason = None
        try:
            remaining = [HeldPosition(tradingsymbol=p.tradingsymbol, exchange=p.exchange,
                                           product=p.product, quantity=p.quantity)
                         for p in await ctx.actor.broker.positions() if p.quantity]
        except BrokerError as exc:
            report.errors.append(f"positions after: {exc}")
            remaining, reason = "unknown", f"the positions could not be read: {exc}"
        stopped_batches = await _stopped_batches(switch, account, stopped or {},
                                                 report.flattened)
        open_orders = (
            [c.order_id for c in report.cancelled if c.status not in FINAL_STATUSES]
            + [o.order_id for f in report.flattened for o in f.orders
               if o.order_id and o.status not in FINAL_STATUSES]
        )
        incomplete = remaining or report.errors or open_orders or skip
        done = KillReport(
            account=account, status="incomplete" if incomplete else "done",
            cancelled=report.cancelled, flattened=report.flattened, remaining=remaining,
            remaining_reason=reason, open_orders=open_orders, errors=report.errors,
            warnings=report.warnings,
            unfinished=sorted(busy),  # batch ids (or single orders' tags)
            skipped=[Symbol(exchange=e, tradingsymbol=t) for e, t in sorted(skip)],
            stopped_batches=stopped_batches,
        )
        if incomplete:
            log.error("kill switch of %s left exposure: %s", account, done)
        try:
            await switch.store.record_audit(
                AuditEntry(account, client or "unknown", "kill", None, as_json(done), time.time())
            )
        except StoreError:
            log.exception("could not audit the kill switch of %s", account)
    return done


@attrs.frozen
class _Progress:
    """What the kill switch's concurrent tasks have done so far."""

    cancelled: list[CancelledOrder] = attrs.Factory(list)
    flattened: list[FlattenedPosition] = attrs.Factory(list)
    errors: list[str] = attrs.Factory(list)
    warnings: list[str] = attrs.Factory(list)


async def _stopped_batches(
    switch: KillSwitch, account: str, stopped: Mapping[str, Work],
    flattened: list[FlattenedPosition],
) -> list[StoppedBatch]:
    """Each stopped batch with the status it reached and the positions of its fills that the
    kill flattened; each flattened position gets the ids of those batches (`batches`)."""
    entries = []
    by_symbol = {(f.exchange, f.tradingsymbol): f for f in flattened}
    for batch_id, work in sorted(stopped.items()):
        left = sorted({(leg.request.exchange, leg.request.tradingsymbol)
                       for leg in work.legs if leg.exposure > 0} & by_symbol.keys())
        for symbol in left:
            by_symbol[symbol].batches.append(batch_id)
        entries.append(StoppedBatch(
            batch_id=batch_id, status=await _final_status(switch, account, batch_id, work),
            flattened=[Symbol(exchange=e, tradingsymbol=t) for e, t in left]))
    return entries


async def _final_status(
    switch: KillSwitch, account: str, batch_id: str, work: Work,
) -> str | None:
    """The status the batch reached, as it reached it; for one cut short or still unfinished,
    what `GET .../batch-orders/{id}` answers (None when the store cannot tell)."""
    if work.result is not None:
        return work.result.status
    try:
        answer = await switch.get(account, batch_id)
    except (StoreError, BatchNotFound):
        log.exception("kill switch: could not read batch %s", batch_id)
        return None
    return answer.status


async def _cancel(
    switch: KillSwitch, ctx: AccountContext, order: Order, deadline: float,
    report: _Progress,
) -> None:
    """Cancel one open order (at its own variety) and follow it to its final state."""
    request = OrderRequest(order.tradingsymbol, order.exchange, order.transaction_type,
                           order.order_type or "MARKET", order.quantity, order.product,
                           variety=order.variety)
    leg = Leg(0, order.tag or "", request, order.order_id, sent=True)
    leg.absorb(order)
    with ctx.actor.watch(order.order_id) as updates:
        try:
            error = await switch.ops.cancel_and_settle(ctx.actor, ctx.limiter, leg,
                                                            updates, deadline)
        except BrokerError as exc:
            error = str(exc)
    report.cancelled.append(CancelledOrder(order_id=order.order_id, status=leg.status,
                                           filled_quantity=leg.filled, error=error))


async def _flatten(
    switch: KillSwitch, ctx: AccountContext, kill_id: str, n: int, position: Position,
    deadline: float, report: _Progress,
) -> None:
    """The rollback's flatten (`Rollback.flatten_position`) of the position, named in the
    report with every order it sent."""
    done = FlattenedPosition(tradingsymbol=position.tradingsymbol, exchange=position.exchange,
                             product=position.product, quantity=position.quantity)
    report.flattened.append(done)
    await switch.rollback.flatten_position(ctx, partial(kill_tag, kill_id, n), n, position,
                                           deadline,
                                           lambda reverse: done.orders.append(
                                               flatten_order(reverse)))


def flatten_order(reverse: Leg) -> FlattenOrder:
    """A reverse order the flatten sent, as the kill switch's (and an exit's) report names it."""
    return FlattenOrder(
        order_id=reverse.order_id, tag=reverse.tag, status=reverse.status,
        filled_quantity=reverse.filled, order_type=reverse.request.order_type,
        modifications=reverse.modifications, error=reverse.error)
