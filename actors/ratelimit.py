"""One order-rate limiter per account: a sliding window with priorities.

Kite allows 10 order writes per second per account, counted over a sliding second, and answers
429 beyond that (the paper venue enforces the same rule). A token bucket with a burst of 10 and a
refill of 10/s lets almost twice that through in one second (the burst, then the refill), so the
limiter keeps the time of every grant instead: at most N grants in any window of one second
(plus a small margin for the time a request takes to reach the broker). Every place, modify and
cancel of an account (batch legs, single orders, rollbacks, recovery, the kill switch) takes a
grant here first, so legs wait for a grant instead of being refused, and a rollback never queues
behind new risk: waiters are served by priority, then in arrival order.
"""

from __future__ import annotations

import collections
import enum
import heapq
import itertools
import math
from collections.abc import Iterator
from contextlib import contextmanager

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
    tokens: float  # grants available right now (0 .. burst)
    waiting: int
    granted: int
    full_in: float = 0.0  # seconds until `burst` grants are available again, if nobody asks


def restamped(stamps: collections.deque[float], granted_at: float,
              now: float) -> collections.deque[float]:
    """`stamps` (in order) with the write stamped `granted_at` counted from `now` instead,
    still in order; unchanged when that stamp has left the window already."""
    try:
        at = stamps.index(granted_at)
    except ValueError:
        return stamps
    stamps[at] = max(granted_at, now)
    if at + 1 < len(stamps) and stamps[at] > stamps[at + 1]:
        return collections.deque(sorted(stamps))
    return stamps


class RateLimiter:
    """`await limiter.acquire(priority)` before each order write.

    At most `int(rate * window)` grants (10 at Kite's 10/s) in any sliding `window` seconds,
    `margin` included: a grant is released `window + margin` seconds after it was given.
    `burst` (default: the whole window's worth) optionally spreads them out: at most `burst`
    grants in any `burst / rate` seconds as well (`burst=1`: one grant every 1/rate seconds).
    A burst above the window's worth cannot be honoured (the broker would refuse it): clamped.

    No background task: the waiter at the head of the queue sleeps until the next grant is due,
    takes it, and wakes the next head. A cancelled waiter leaves the queue cleanly.
    """

    def __init__(
        self, rate: float = 10.0, burst: int | None = None, *, window: float = 1.0,
        margin: float = 0.0,
    ) -> None:
        if rate <= 0 or window <= 0 or margin < 0:
            raise ValueError("rate and window must be positive, margin not negative")
        self._limit = max(1, int(rate * window + 1e-9))
        self._window = window + margin
        self._burst = self._limit if burst is None else max(1, min(int(burst), self._limit))
        self._burst_window = self._burst / rate if self._burst < self._limit else self._window
        self._grants: collections.deque[float] = collections.deque()  # in the window, in order
        self._waiters: list[_Waiter] = []
        self._counter = itertools.count()
        self._granted = 0
        self._held_until = -math.inf  # `hold`: no grant to anyone before then
        self._undoing = 0  # rollbacks in progress (`undoing`): new orders wait meanwhile

    @property
    def limit(self) -> int:
        """Grants allowed in any one window."""
        return self._limit

    @property
    def burst(self) -> int:
        """Grants available at once when nothing was granted lately."""
        return self._burst

    def statistics(self) -> RateLimiterStatistics:
        now = trio.current_time()
        available = self._available(now)
        return RateLimiterStatistics(float(available), len(self._waiters), self._granted,
                                     max(0.0, self._full_at() - now))

    def _prune(self, now: float) -> None:
        # `g + window <= now` is the very expression `_next_free` sleeps until: consistent.
        while self._grants and self._grants[0] + self._window <= now:
            self._grants.popleft()

    def hold(self, seconds: float) -> None:
        """The broker refused a write as over its limit (429): it counts more than we do, so
        nobody is granted anything for `seconds`. The refused write asks again at once and
        keeps its place by priority: a rollback's retry still goes before new orders."""
        self._held_until = max(self._held_until, trio.current_time() + seconds)

    @contextmanager
    def undoing(self) -> Iterator[None]:
        """A rollback runs: no grant to new orders (NORMAL) until it is over, even one queued
        before its reverse orders were (a reverse is sent only once its leg is settled, and
        the window may slide meanwhile): exposure is undone before new risk goes out."""
        self._undoing += 1
        try:
            yield
        finally:
            self._undoing -= 1
            if not self._undoing:
                self._wake_head()

    def _blocked(self, waiter: _Waiter) -> bool:
        return self._undoing > 0 and waiter.priority > Priority.ROLLBACK

    def _available(self, now: float) -> int:
        if now < self._held_until:
            return 0
        self._prune(now)
        available = self._limit - len(self._grants)
        if self._burst < self._limit:
            recent = 0
            for stamp in reversed(self._grants):
                if stamp + self._burst_window <= now:
                    break
                recent += 1
            available = min(available, self._burst - recent)
        return max(0, available)

    def _next_free(self, now: float) -> float:
        """When the next grant may be given (`now` if it may be now)."""
        at = max(now, self._held_until)
        if len(self._grants) >= self._limit:
            at = max(at, self._grants[-self._limit] + self._window)
        if self._burst < self._limit and len(self._grants) >= self._burst:
            at = max(at, self._grants[-self._burst] + self._burst_window)
        return at

    def _full_at(self) -> float:
        """When `burst` grants are available again, if none is given meanwhile."""
        at = max(trio.current_time(), self._held_until)
        keep = self._limit - self._burst  # grants that may stay in the window
        if len(self._grants) > keep:
            at = max(at, self._grants[len(self._grants) - keep - 1] + self._window)
        if self._burst < self._limit and self._grants:
            at = max(at, self._grants[-1] + self._burst_window)
        return at

    def _wake_head(self) -> None:
        if self._waiters:
            self._waiters[0].wakeup.set()

    def answered(self, granted_at: float) -> None:
        """The write granted at `granted_at` (what `acquire` returned) has been answered: it
        counts from now on. The broker counts a write when it arrives, which is after the grant
        and before the answer: a busy process or network can put more than `margin` between
        grant and arrival, and the broker would then see 11 in a second. Counted from the
        answer, the window cannot start before the broker's."""
        self._grants = restamped(self._grants, granted_at, trio.current_time())

    async def acquire(self, priority: Priority = Priority.NORMAL) -> float:
        """Wait for a grant; higher priority waiters overtake lower ones still waiting.
        Returns the grant's time, for `answered`."""
        await trio.lowlevel.checkpoint_if_cancelled()
        me = _Waiter(int(priority), next(self._counter))
        heapq.heappush(self._waiters, me)
        granted = False
        try:
            while True:
                now = trio.current_time()
                if self._waiters[0] is me and not self._blocked(me) and self._available(now):
                    self._grants.append(now)
                    heapq.heappop(self._waiters)
                    granted = True
                    self._granted += 1
                    self._wake_head()
                    await trio.lowlevel.cancel_shielded_checkpoint()
                    return now
                me.wakeup = trio.Event()
                if self._waiters[0] is me and not self._blocked(me):
                    with trio.move_on_at(self._next_free(now)):
                        await me.wakeup.wait()
                else:
                    await me.wakeup.wait()
        finally:
            if not granted:
                self._waiters.remove(me)
                heapq.heapify(self._waiters)
                self._wake_head()
