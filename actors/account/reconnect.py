"""The reconcile after a (re)connect: staggered across the process's accounts, and retried
with backoff while the broker's read budget is spent.

When a shared upstream comes back, every account reconnects within its jitter and each lists
the day's orders: at most `slots` of those listings run at once in the process (one gate per
Trio run), the others wait their turn with their ticker frames held, instead of thousands of
listings parsed at the same moment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from brokers.base import RateLimited

from ..backoff import Backoff

__all__ = ["reconcile_staggered"]

log = logging.getLogger("actors.account")

_GATE: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("reconcile_gate")


def _gate(slots: int) -> trio.CapacityLimiter:
    try:
        return _GATE.get()
    except LookupError:
        gate = trio.CapacityLimiter(slots)
        _GATE.set(gate)
        return gate


async def reconcile_staggered(
    reconcile: Callable[[], Awaitable[None]], backoff: Backoff, account: str, slots: int
) -> None:
    """`reconcile()` once a slot is free; a listing refused with 429 is retried with
    `backoff`, the ticker kept open (its frames are held meanwhile), instead of tearing the
    connection down and reconnecting, which would only read more."""
    while True:
        try:
            async with _gate(slots):
                return await reconcile()
        except RateLimited as exc:
            log.info("reconcile of %s refused (%s): retrying in %.2f s", account, exc,
                     backoff.peek())
        await trio.sleep(backoff.next())
