"""The reconcile after a (re)connect: staggered across the process's accounts, retried with
backoff while the broker's read budget is spent, and compared with the book a slice at a time.

When a shared upstream comes back, every account reconnects within its jitter and each lists
the day's orders: at most `slots` of those listings run at once in the process (one gate per
Trio run), the others wait their turn with their ticker frames held, instead of thousands of
listings parsed at the same moment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import trio

from brokers.base import Order, RateLimited

from ..backoff import Backoff
from .book import OrderBook

__all__ = ["changed_orders", "reconcile_staggered"]

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


#: Orders of a listing compared with the book between two checkpoints (about 1 ms).
_LISTING_SLICE = 500


async def changed_orders(book: OrderBook, listing: Sequence[Order]) -> list[Order]:
    """The orders of a listing (the whole day's) that would change `book`, looked at a slice
    at a time so that other accounts' updates go out in between. Nothing but the actor's own
    task applies updates to its book, so the slices see it as one look would (a day's roll
    may come in between, as it may during the listing itself)."""
    changed = []
    for start in range(0, len(listing), _LISTING_SLICE):
        if start:
            await trio.lowlevel.checkpoint()
        changed.extend(o for o in listing[start:start + _LISTING_SLICE] if book.changed(o))
    return changed
