"""The reconciles: the one after a (re)connect staggered across the process's accounts, and
retried with backoff while the broker's read budget is spent; the periodic one, whose failure
waits for the next period.

When a shared upstream comes back, every account reconnects within its jitter and each lists
the day's orders: at most `slots` of those listings run at once in the process (one gate per
Trio run), the others wait their turn with their ticker frames held, instead of thousands of
listings parsed at the same moment.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from brokers.base import BrokerError, RateLimited, TokenExpired

from ..backoff import Backoff

__all__ = ["reconcile_periodic", "reconcile_staggered", "reconciles_settled"]

log = logging.getLogger("actors.account")



class _Gate:
    """The process's reconcile slots, and how many reconciles wait for one or hold one."""

    def __init__(self, slots: int) -> None:
        self.slots = trio.CapacityLimiter(slots)
        self.pending = 0
        self.idle = trio.Event()  # set while none is pending
        self.idle.set()

    def enter(self) -> None:
        self.pending += 1
        if self.idle.is_set():
            self.idle = trio.Event()

    def leave(self) -> None:
        self.pending -= 1
        if not self.pending:
            self.idle.set()


_GATE: trio.lowlevel.RunVar[_Gate] = trio.lowlevel.RunVar("reconcile_gate")


def _gate(slots: int) -> _Gate:
    try:
        return _GATE.get()
    except LookupError:
        gate = _Gate(slots)
        _GATE.set(gate)
        return gate


async def reconciles_settled(max_wait_s: float) -> None:
    """Back once no reconcile after a (re)connect is pending in the process, or after
    `max_wait_s`: what can wait (an account's positions fetch) does not compete with the
    listings of a takeover or a reconnect wave, which decide when each account is live."""
    try:
        idle = _GATE.get().idle
    except LookupError:
        return
    with trio.move_on_after(max_wait_s):
        await idle.wait()


async def reconcile_staggered(
    reconcile: Callable[[], Awaitable[None]], backoff: Backoff, account: str, slots: int
) -> None:
    """`reconcile()` once a slot is free; a listing refused with 429 is retried with
    `backoff`, the ticker kept open (its frames are held meanwhile), instead of tearing the
    connection down and reconnecting, which would only read more."""
    gate = _gate(slots)
    gate.enter()
    try:
        while True:
            try:
                async with gate.slots:
                    return await reconcile()
            except RateLimited as exc:
                log.info("reconcile of %s refused (%s): retrying in %.2f s", account, exc,
                         backoff.peek())
            await trio.sleep(backoff.next())
    finally:
        gate.leave()


async def reconcile_periodic(reconcile: Callable[[], Awaitable[None]], account: str) -> None:
    """A periodic reconcile while connected; failing one (a busy broker) waits for the next
    period (an expired token does not: the actor reconnects once it has a new one)."""
    try:
        await reconcile()
    except TokenExpired:
        raise
    except BrokerError as exc:
        log.warning("account %s: periodic reconcile failed: %s: %s", account,
                    type(exc).__name__, exc)
