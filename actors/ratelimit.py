"""One order-rate limiter per account: a token bucket with priorities.

Kite allows 10 order writes per second per account and answers 429 beyond that. Every place,
modify and cancel of an account (batch legs, single orders, rollbacks, recovery, the kill switch)
takes a token here first, so legs wait for a token instead of being refused, and a rollback never
queues behind new risk: waiters are served by priority, then in arrival order.
"""

from __future__ import annotations

import enum
import heapq
import itertools

import attrs
import trio


class Priority(enum.IntEnum):
    """Lower is served first."""

    ROLLBACK = 0  # undoing exposure: rollbacks, the kill switch, recovery
    NORMAL = 1  # new orders, modifies, cancels


@attrs.define(eq=False)
class _Waiter:
    priority: int
    order: int
    wakeup: trio.Event = attrs.field(factory=trio.Event)

    def key(self) -> tuple[int, int]:
        return (self.priority, self.order)

    def __lt__(self, other: _Waiter) -> bool:
        return self.key() < other.key()


@attrs.frozen
class RateLimiterStatistics:
    tokens: float
    waiting: int
    granted: int


class RateLimiter:
    """`await limiter.acquire(priority)` before each order write; `rate` tokens per second.

    No background task: the waiter at the head of the queue sleeps until the next token is due,
    takes it, and wakes the next head. A cancelled waiter leaves the queue cleanly.
    """

    def __init__(self, rate: float = 10.0, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._burst = float(burst if burst is not None else max(1, int(rate)))
        self._tokens = self._burst
        self._stamp = trio.current_time()
        self._waiters: list[_Waiter] = []
        self._counter = itertools.count()
        self._granted = 0

    def statistics(self) -> RateLimiterStatistics:
        self._refill()
        return RateLimiterStatistics(self._tokens, len(self._waiters), self._granted)

    def _refill(self) -> None:
        now = trio.current_time()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def _wake_head(self) -> None:
        if self._waiters:
            self._waiters[0].wakeup.set()

    async def acquire(self, priority: Priority = Priority.NORMAL) -> None:
        """Wait for a token; higher priority waiters overtake lower ones still waiting."""
        await trio.lowlevel.checkpoint_if_cancelled()
        me = _Waiter(int(priority), next(self._counter))
        heapq.heappush(self._waiters, me)
        granted = False
        try:
            while True:
                self._refill()
                if self._waiters[0] is me and self._tokens >= 1.0 - 1e-9:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    heapq.heappop(self._waiters)
                    granted = True
                    self._granted += 1
                    self._wake_head()
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return
                me.wakeup = trio.Event()
                if self._waiters[0] is me:
                    with trio.move_on_after((1.0 - self._tokens) / self._rate):
                        await me.wakeup.wait()
                else:
                    await me.wakeup.wait()
        finally:
            if not granted:
                self._waiters.remove(me)
                heapq.heapify(self._waiters)
                self._wake_head()
