"""Crash recovery: every unfinished batch reconciled with the broker by tag at start.

All legs COMPLETE (and no rollback begun) → `success`; anything else → rolled back, reverse orders
of an interrupted rollback counted first so nothing is flattened twice; an order the broker no
longer lists (a restart on a later day) → `rollback_failed` for manual handling, never guessed.
A recovery that shutdown cuts short again (RollbackAborted) leaves the batch unfinished as it
was: the next start resumes it the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import trio

from store import BatchRecord, LegRecord

from ._execution import BatchRunner, _Account
from ._orders import Leg

log = logging.getLogger("actors.batch")  # the coordinator's log, as before the split


async def recover(
    runner: BatchRunner, ctx: _Account, batch: BatchRecord, records: list[LegRecord]
) -> str:
    """Reconcile one unfinished batch with the broker by tag: success or rolled back."""
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
        await _settle_reverses(runner, ctx, legs, reverses, by_tag)
        status = await runner.rollback(ctx, batch.batch_id, legs)
    elapsed = max(time.time() - batch.created_at, 0.0)
    await runner.finish(batch.account, batch.batch_id, legs, status, elapsed)
    return status


async def _settle_reverses(
    runner: BatchRunner, ctx: _Account, legs: tuple[Leg, ...], reverses: list[LegRecord],
    by_tag: Mapping[str, Any],
) -> None:
    """Reverse orders of an interrupted rollback: wait for (or cancel) them, count fills."""
    deadline = trio.current_time() + runner.config.rollback_timeout_s
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
                await runner.ops.cancel_and_settle(ctx.actor, ctx.limiter, reverse, updates,
                                                   deadline)
        leg.reverse_filled += reverse.filled
