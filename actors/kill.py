"""The kill switch: cancel every open order of an account, then flatten every net position.

Runs after the coordinator has stopped the account's running batches (they roll back first), and
uses the same primitives as a rollback: rate-limited at rollback priority, tagged reverse orders
(`od` + id + position number + `K` + slice), each followed to its final state.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import trio

from brokers.base import BrokerError, Order, OrderRequest, Position
from store import AuditEntry, StoreError

from .batch import Leg, UnknownOutcome, new_batch_id
from .ratelimit import Priority

if TYPE_CHECKING:
    from .batch import BatchCoordinator, _Account

log = logging.getLogger(__name__)


async def kill_account(
    coordinator: BatchCoordinator, ctx: _Account, account: str, client: str
) -> dict[str, Any]:
    """Cancel, flatten, check; the report names what is left, if anything."""
    config = coordinator.config
    deadline = trio.current_time() + config.rollback_timeout_s
    report: dict[str, Any] = {"account": account, "cancelled": [], "flattened": [],
                              "remaining": [], "errors": []}
    with trio.CancelScope(shield=True):
        try:
            listing = await ctx.actor.broker.orders()
        except BrokerError as exc:
            listing = []
            report["errors"].append(f"GET /orders: {exc}")
        async with trio.open_nursery() as nursery:
            for order in listing:
                if not order.is_final:
                    nursery.start_soon(_cancel, coordinator, ctx, order, deadline, report)
        kill_id = new_batch_id()
        try:
            positions = [p for p in await ctx.actor.broker.positions() if p.quantity]
            await ctx.instruments.load({p.exchange for p in positions})
        except BrokerError as exc:
            positions = []
            report["errors"].append(f"positions: {exc}")
        async with trio.open_nursery() as nursery:
            for n, position in enumerate(positions):
                nursery.start_soon(_flatten, coordinator, ctx, kill_id, n, position, deadline,
                                   report)
        try:
            left = [p for p in await ctx.actor.broker.positions() if p.quantity]
        except BrokerError as exc:
            left = []
            report["errors"].append(f"positions after: {exc}")
        report["remaining"] = [
            {"tradingsymbol": p.tradingsymbol, "exchange": p.exchange, "product": p.product,
             "quantity": p.quantity} for p in left
        ]
        report["status"] = "done" if not left and not report["errors"] else "incomplete"
        if report["status"] != "done":
            log.error("kill switch of %s left exposure: %s", account, report)
        try:
            await coordinator.store.record_audit(
                AuditEntry(account, client or "unknown", "kill", None, report, time.time())
            )
        except StoreError:
            log.exception("could not audit the kill switch of %s", account)
    return report


async def _cancel(
    coordinator: BatchCoordinator, ctx: _Account, order: Order, deadline: float,
    report: dict[str, Any],
) -> None:
    request = OrderRequest(order.tradingsymbol, order.exchange, order.transaction_type,
                           order.order_type or "MARKET", order.quantity, order.product)
    leg = Leg(0, order.tag or order.order_id, request, order.order_id, sent=True)
    leg.absorb(order)
    with ctx.actor.watch(order.order_id) as updates:
        await coordinator.ops.cancel_and_settle(ctx.actor, ctx.limiter, leg, updates, deadline)
    report["cancelled"].append({"order_id": order.order_id, "status": leg.status,
                                "filled_quantity": leg.filled})


async def _flatten(
    coordinator: BatchCoordinator, ctx: _Account, kill_id: str, n: int, position: Position,
    deadline: float, report: dict[str, Any],
) -> None:
    side = "SELL" if position.quantity > 0 else "BUY"
    remaining = abs(position.quantity)
    info = ctx.instruments.get(position.exchange, position.tradingsymbol)
    size = remaining
    if info is not None and info.freeze_quantity:
        size = max(info.lot_size, info.freeze_quantity // info.lot_size * info.lot_size)
    done: dict[str, Any] = {"tradingsymbol": position.tradingsymbol,
                            "exchange": position.exchange, "product": position.product,
                            "quantity": position.quantity, "orders": []}
    report["flattened"].append(done)
    part = 0
    while remaining > 0 and part < 10:
        tag = f"od{kill_id}{n:02d}K{part}"
        request = OrderRequest(position.tradingsymbol, position.exchange, side, "MARKET",
                               min(size, remaining), position.product, tag=tag,
                               market_protection=coordinator.config.market_protection)
        leg = Leg(part, tag, request)
        part += 1
        with ctx.actor.watch(tag) as updates:
            try:
                await coordinator.ops.send(ctx.actor, ctx.limiter, None, leg, Priority.ROLLBACK,
                                           deadline)
                await coordinator.ops.follow(ctx.actor, leg, updates, deadline)
                if not leg.is_final:
                    await coordinator.ops.cancel_and_settle(
                        ctx.actor, ctx.limiter, leg, updates,
                        trio.current_time() + coordinator.config.cleanup_grace_s,
                    )
            except (BrokerError, UnknownOutcome) as exc:
                leg.error = str(exc)
        done["orders"].append({"order_id": leg.order_id, "tag": tag, "status": leg.status,
                               "filled_quantity": leg.filled, "error": leg.error})
        remaining -= leg.filled
        if leg.filled == 0:
            break
