"""Admission control: overload costs throughput, never safety.

A batch is refused (503 `overloaded`, with `Retry-After`) before anything is written or placed
when it cannot start within its deadline: its account already has `max_batches_per_account`
batches in flight, or the orders queued ahead of it at the account's order-rate budget, plus the
store's recent write latency, would take longer than its `timeout_s` to send. Refusing up front
beats a batch that places some legs, misses its deadline and must roll them back.
"""

from __future__ import annotations

import math

import attrs

from ._config import BatchConfig


@attrs.frozen
class Load:
    """What is ahead of a new batch on its account."""

    batches: int  # the account's batches in flight (running, dispatched or recovering)
    orders: int  # order writes queued ahead: legs not sent yet, writes waiting for a token
    store_latency_s: float  # recent duration of one store write


@attrs.frozen
class Refusal:
    reason: str  # "batches_in_flight", "order_rate", "store_latency"
    message: str
    retry_after_s: int


def admit(config: BatchConfig, load: Load, legs: int, timeout_s: float) -> Refusal | None:
    """None when a batch of `legs` legs can start within `timeout_s`, else why not."""
    if load.batches >= config.max_batches_per_account:
        return Refusal("batches_in_flight",
                       f"the account has {load.batches} batches in flight (at most "
                       f"{config.max_batches_per_account}): retry later",
                       _seconds(load.orders / config.rate_per_s))
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


def _seconds(value: float) -> int:
    """Whole seconds for Retry-After: at least 1."""
    return max(1, math.ceil(value))
