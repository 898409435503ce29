"""The whole order budget of one account: Kite's per-second, per-minute and per-day counts.

Kite counts order writes (place, modify, cancel) per user: 10 a second, 200 a minute, 3,000 a
day, and answers 429 beyond any of them. The second is the sliding-window `RateLimiter` (writes
wait their turn, rollbacks first). The minute and the day are counted here, with a reserve
that only rollbacks and the kill switch may spend: new risk stops `reserve` writes short of
each limit, so undoing exposure never finds the budget empty. A write over the minute waits
for the window to slide (the minute is sliding, `margin` included: stricter than Kite's
calendar minute, so any calendar minute holds no more than the limit). A write over the day is
refused (`BudgetExhausted`): the day only ends at IST midnight. Batches are admitted only when
all their legs fit (`room`), so legs of an admitted batch do not meet this refusal.
"""

from __future__ import annotations

import collections
import datetime as dt
import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import attrs
import trio

from brokers.base import BrokerError

from .calendar import IST
from .ratelimit import Priority, RateLimiter, RateLimiterStatistics, restamped

MINUTE_S = 60.0


def ist_now() -> dt.datetime:
    return dt.datetime.now(IST)


class BudgetExhausted(BrokerError):
    """No order write left today (for this priority): nothing was sent."""


@attrs.frozen
class BudgetRoom:
    """Whether `writes` more writes of new risk fit the budget now, and if not, when."""

    writes: int
    minute: float  # writes new risk may still send this minute (math.inf: no limit)
    day: float  # ... today
    minute_wait_s: float  # until `writes` fit the minute (math.inf: never: over the limit)
    day_ends_in_s: float  # until IST midnight, when the day's count starts again


@attrs.frozen
class BudgetLimits:
    per_second: float = 10.0
    burst: int | None = None
    margin_s: float = 0.05  # a write counts this much past its window (the trip to Kite)
    per_minute: int | None = 200
    per_day: int | None = 3000
    reserve: int = 20  # of each minute and day, for rollbacks and the kill switch only


class OrderBudget:
    """`await budget.acquire(priority)` before each order write of the account."""

    def __init__(
        self, limits: BudgetLimits, *, clock: Callable[[], dt.datetime] = ist_now
    ) -> None:
        self._limits = limits
        self._second = RateLimiter(limits.per_second, limits.burst, margin=limits.margin_s)
        self._minute: collections.deque[float] = collections.deque()
        self._clock = clock
        self._day = clock().date()
        self._day_count = 0

    def statistics(self) -> RateLimiterStatistics:
        """The per-second limiter's: writes waiting, grants given."""
        return self._second.statistics()

    def undoing(self) -> AbstractContextManager[None]:
        """A rollback runs: see `RateLimiter.undoing`."""
        return self._second.undoing()

    def hold(self, seconds: float) -> None:
        """A write refused with 429: see `RateLimiter.hold`."""
        self._second.hold(seconds)

    def _cap(self, limit: int | None, priority: Priority) -> float:
        if limit is None:
            return math.inf
        return limit - (0 if priority == Priority.ROLLBACK else self._limits.reserve)

    def _prune(self, now: float) -> None:
        window = MINUTE_S + self._limits.margin_s
        while self._minute and self._minute[0] + window <= now:
            self._minute.popleft()
        today = self._clock().date()
        if today != self._day:
            self._day, self._day_count = today, 0

    def room(self, writes: int) -> BudgetRoom:
        """What new risk (NORMAL priority) may still send, for `writes` more writes."""
        now = trio.current_time()
        self._prune(now)
        cap = self._cap(self._limits.per_minute, Priority.NORMAL)
        minute = cap - len(self._minute)
        wait = 0.0
        if writes > cap:
            wait = math.inf
        elif writes > minute:  # the oldest writes must leave the window first
            leaving = self._minute[int(writes - minute) - 1]
            wait = leaving + MINUTE_S + self._limits.margin_s - now
        day = self._cap(self._limits.per_day, Priority.NORMAL) - self._day_count
        clock = self._clock()
        midnight = dt.datetime.combine(clock.date() + dt.timedelta(days=1), dt.time(),
                                       clock.tzinfo)
        return BudgetRoom(writes, max(0.0, minute), max(0.0, day), max(0.0, wait),
                          (midnight - clock).total_seconds())

    async def room_for(self, writes: int) -> BudgetRoom:
        """Wait until the writes counted so far have slid far enough out of the minute for
        `writes` more of new risk (as a client told Retry-After waits; forever when they never
        fit) and return the room then (writes meanwhile take their share of it)."""
        await trio.sleep(self.room(writes).minute_wait_s)
        return self.room(writes)

    def _check(self, priority: Priority) -> float | None:
        """None when a write of `priority` fits the minute and the day now, else when the
        minute slides; BudgetExhausted when the day has nothing left for it."""
        now = trio.current_time()
        self._prune(now)
        day_cap = self._cap(self._limits.per_day, priority)
        if self._day_count >= day_cap:
            raise BudgetExhausted(
                f"the day's order budget is spent ({self._day_count} of "
                f"{self._limits.per_day} writes, {self._limits.reserve} kept for rollbacks): "
                "nothing was sent")
        if len(self._minute) >= self._cap(self._limits.per_minute, priority):
            return self._minute[0] + MINUTE_S + self._limits.margin_s
        return None

    async def acquire(self, priority: Priority = Priority.NORMAL) -> float:
        """Wait for the minute and the second; count the write (or BudgetExhausted). Returns
        the grant's time, to give `answered` once the write is answered."""
        while True:
            slides_at = self._check(priority)
            if slides_at is not None:
                await trio.sleep_until(slides_at)
                continue
            granted_at = await self._second.acquire(priority)
            if self._check(priority) is None:  # no checkpoint from here to the count
                self._minute.append(granted_at)
                self._day_count += 1
                return granted_at

    def answered(self, granted_at: float) -> None:
        """The write granted at `granted_at` was answered: its second and its minute count
        from now (`RateLimiter.answered`: the broker counts a write when it arrives)."""
        self._second.answered(granted_at)
        self._minute = restamped(self._minute, granted_at, trio.current_time())
