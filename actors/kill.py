"""The kill switch: cancel every open order of an account, then flatten every net position.

Runs after the coordinator has stopped the account's batches and waited for every unfinished one
(and every recovery) to finish its rollback; the symbols of one still unfinished when that wait
ran out are left alone (`busy`) and named in the report. Each position is flattened by the
rollback's own unwind (`OrderOps.flatten`): rate-limited at rollback priority, tagged reverse
orders (`od` + id + position number + `K` + attempt) sliced by the freeze quantity, a marketable
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
from collections.abc import Mapping, Set
from typing import TYPE_CHECKING, Any

import attrs
import trio

from brokers.base import (
    FINAL_STATUSES,
    BrokerError,
    Order,
    OrderRequest,
    Position,
)
from store import AuditEntry, StoreError

from ._reverse import ReverseMarket
from .batch import Leg, new_batch_id
from .errors import BatchNotFound
from .outcomes import (
    CancelledOrder,
    FlattenedPosition,
    FlattenOrder,
    HeldPosition,
    KillReport,
    StoppedBatch,
    Symbol,
    as_json,
)

if TYPE_CHECKING:
    from .batch import BatchCoordinator, _Account, _Work

log = logging.getLogger(__name__)


async def kill_account(
    coordinator: BatchCoordinator, ctx: _Account, account: str, client: str,
    *, busy: Mapping[str, Set[tuple[str, str]]] | None = None,
    stopped: Mapping[str, _Work] | None = None,
) -> KillReport:
    """Cancel, flatten, check; the report names what is left, if anything.

    `busy`: batches (or orders) still unfinished, by id, with their (exchange, tradingsymbol):
    their rollback owns those symbols, so their orders are not cancelled nor their positions
    flattened here. `stopped`: the batches the kill switch stopped, by id (finished by now,
    but for those in `busy`)."""
    config = coordinator.config
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
                    nursery.start_soon(_cancel, coordinator, ctx, order, deadline, report)
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
                nursery.start_soon(_flatten, coordinator, ctx, kill_id, n, position, deadline,
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
        stopped_batches = await _stopped_batches(coordinator, account, stopped or {},
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
            await coordinator.store.record_audit(
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
    coordinator: BatchCoordinator, account: str, stopped: Mapping[str, _Work],
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
            batch_id=batch_id, status=await _final_status(coordinator, account, batch_id, work),
            flattened=[Symbol(exchange=e, tradingsymbol=t) for e, t in left]))
    return entries


async def _final_status(
    coordinator: BatchCoordinator, account: str, batch_id: str, work: _Work,
) -> str | None:
    """The status the batch reached, as it reached it; for one cut short or still unfinished,
    what `GET .../batch-orders/{id}` answers (None when the store cannot tell)."""
    if work.result is not None:
        return work.result.status
    try:
        answer = await coordinator.get(account, batch_id)
    except (StoreError, BatchNotFound):
        log.exception("kill switch: could not read batch %s", batch_id)
        return None
    return answer.status


async def _cancel(
    coordinator: BatchCoordinator, ctx: _Account, order: Order, deadline: float,
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
            error = await coordinator.ops.cancel_and_settle(ctx.actor, ctx.limiter, leg,
                                                            updates, deadline)
        except BrokerError as exc:
            error = str(exc)
    report.cancelled.append(CancelledOrder(order_id=order.order_id, status=leg.status,
                                           filled_quantity=leg.filled, error=error))


async def _flatten(
    coordinator: BatchCoordinator, ctx: _Account, kill_id: str, n: int, position: Position,
    deadline: float, report: _Progress,
) -> None:
    """The rollback's unwind (`OrderOps.flatten`) of a leg that bought (or sold) the position:
    sliced by the freeze quantity, a marketable LIMIT where MARKET is refused, re-priced."""
    side = "BUY" if position.quantity > 0 else "SELL"
    quantity = abs(position.quantity)
    request = OrderRequest(position.tradingsymbol, position.exchange, side, "MARKET",
                           quantity, position.product)
    held = Leg(n, f"od{kill_id}{n:02d}K", request, status="COMPLETE", filled=quantity)
    done = FlattenedPosition(tradingsymbol=position.tradingsymbol, exchange=position.exchange,
                             product=position.product, quantity=position.quantity)
    report.flattened.append(done)

    def record(reverse: Leg) -> None:
        done.orders.append(FlattenOrder(
            order_id=reverse.order_id, tag=reverse.tag, status=reverse.status,
            filled_quantity=reverse.filled, order_type=reverse.request.order_type,
            modifications=reverse.modifications, error=reverse.error))

    market = ReverseMarket(ctx.actor, ctx.limiter, ctx.instruments, coordinator.config)
    rb: dict[str, Any] = {}
    await coordinator.ops.flatten(ctx.actor, market, None, held, deadline, rb,
                                  tag_of=lambda attempt: f"od{kill_id}{n:02d}K{attempt}",
                                  on_reverse=record)
