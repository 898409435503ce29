"""Admission control: overload costs throughput, never safety.

A batch is refused (503 `overloaded`, with `Retry-After`) before anything is written or placed
when it cannot start within its deadline: its account already has `max_batches_per_account`
batches in flight, or the orders queued ahead of it at the account's order-rate budget, plus the
store's recent write latency, would take longer than its `timeout_s` to send. Refusing up front
beats a batch that places some legs, misses its deadline and must roll them back.

A batch whose legs (with the writes queued ahead of them) do not fit the account's minute or
day budget, less the reserve kept for rollbacks, is refused the same way with reason and error
`order_budget`, `Retry-After` saying when they would fit.
"""

from __future__ import annotations

import math

import attrs

from ..budget import BudgetRoom
from .config import BatchConfig


@attrs.frozen
class Load:
    """What is ahead of a new batch on its account."""

    batches: int  # the account's batches in flight (running, dispatched or recovering)
    orders: int  # order writes queued ahead: legs not sent yet, writes waiting for a token
    store_latency_s: float  # recent duration of one store write
    budget: BudgetRoom | None = None  # the minute and day budget for these writes and the legs


@attrs.frozen
class Refusal:
    reason: str  # "batches_in_flight", "order_budget", "order_rate", "store_latency"
    message: str
    retry_after_s: int


def admit(config: BatchConfig, load: Load, legs: int, timeout_s: float) -> Refusal | None:
    """None when a batch of `legs` legs can start within `timeout_s`, else why not."""
    if load.batches >= config.max_batches_per_account:
        return Refusal("batches_in_flight",
                       f"the account has {load.batches} batches in flight (at most "
                       f"{config.max_batches_per_account}): retry later",
                       _seconds(load.orders / config.rate_per_s))
    if load.budget is not None:
        refusal = _over_budget(config, load.budget, load.orders, legs)
        if refusal is not None:
            return refusal
    burst = config.rate_burst or math.floor(config.rate_per_s + 1e-9)
    sending_s = max(0, load.orders + legs - burst) / config.rate_per_s
    # Two writes before the first POST: the batch (write-ahead), then its leg's PLACING.
    store_s = 2 * load.store_latency_s
    if sending_s + store_s <= timeout_s:
        return None
    if store_s > sending_s:
        reason = "store_latency"
        why = f"the store answers writes in {load.store_latency_s:.2f} s"
    else:
        reason = "order_rate"
        why = (f"{load.orders} order writes are queued ahead of its {legs} legs at "
               f"{config.rate_per_s:g}/s")
    return Refusal(reason, f"the batch cannot start within its timeout_s of {timeout_s:g} s: "
                           f"{why}; nothing was placed, retry later",
                   _seconds(sending_s + store_s - timeout_s))


def _over_budget(config: BatchConfig, room: BudgetRoom, ahead: int, legs: int) -> Refusal | None:
    """Refused when the legs and the writes queued ahead do not fit the minute or the day."""
    kept = f"{config.rate_reserve} kept for rollbacks"
    if room.writes > room.day:
        return Refusal("order_budget",
                       f"the day's order budget ({config.rate_per_day} writes, {kept}) has room "
                       f"for {room.day:g} more and {ahead} are queued ahead of its {legs} legs: "
                       "nothing was placed; the budget starts again at midnight IST",
                       _seconds(room.day_ends_in_s))
    if room.minute_wait_s > 0:
        when = ("never fits one minute" if math.isinf(room.minute_wait_s)
                else f"fits in {room.minute_wait_s:.1f} s")
        return Refusal("order_budget",
                       f"the minute's order budget ({config.rate_per_minute} writes, {kept}) "
                       f"has room for {room.minute:g} more and {ahead} are queued ahead of its "
                       f"{legs} legs: nothing was placed, the batch {when}",
                       _seconds(min(room.minute_wait_s, 60.0)))
    return None


def _seconds(value: float) -> int:
    """Whole seconds for Retry-After: at least 1."""
    return max(1, math.ceil(value))
