"""The venue's request limits, as Kite counts them per user: order writes, modifications, reads.

Kite answers 429 (`NetworkException`, "Too many requests") beyond 10 order writes (place,
modify, cancel) a second, 200 a minute and 3,000 a day, beyond about 25 modifications of one
order, and beyond about 10 reads (GET) a second. The venue refuses the same way, each limit
configurable (None: off), so a client that overruns any of them finds out here, not at Kite.
Seconds and minutes are sliding windows (stricter than Kite's calendar ones); the day is the
IST calendar day. A refused request counts nowhere but in `refused`.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Callable

import trio

from .config import IST
from .errors import VenueError, input_error


def _today() -> dt.date:
    return dt.datetime.now(IST).date()


def _too_many(what: str) -> VenueError:
    return VenueError(429, "NetworkException", f"Too many requests: {what}")


class _Window:
    """At most `limit` requests per key in any sliding `seconds` (None: no limit)."""

    def __init__(self, limit: int | None, seconds: float, name: str) -> None:
        if limit is not None and limit < 1:
            raise input_error(f"{name} must be positive or None")
        self.limit, self.name = limit, name
        self._seconds = seconds
        self._seen: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque)

    def full(self, key: str, now: float) -> bool:
        if self.limit is None:
            return False
        seen = self._seen[key]
        while seen and seen[0] <= now - self._seconds:
            seen.popleft()
        return len(seen) >= self.limit

    def count(self, key: str, now: float) -> None:
        if self.limit is not None:
            self._seen[key].append(now)

    def reset(self) -> None:
        self._seen.clear()


class _Daily:
    """At most `limit` requests per key in one IST calendar day (None: no limit)."""

    def __init__(self, limit: int | None, today: Callable[[], dt.date]) -> None:
        if limit is not None and limit < 1:
            raise input_error("rate_limit_per_day must be positive or None")
        self.limit = limit
        self._today = today
        self._day = today()
        self._counts: collections.Counter[str] = collections.Counter()

    def full(self, key: str) -> bool:
        if self._today() != self._day:
            self._day, self._counts = self._today(), collections.Counter()
        return self.limit is not None and self._counts[key] >= self.limit

    def count(self, key: str) -> None:
        self._counts[key] += 1

    def reset(self) -> None:
        self._counts.clear()


class RequestLimits:
    """`check_write(account)` before each place/modify/cancel, `check_modify` before each
    modify, `check_read(account)` before each GET: VenueError 429 when over a limit."""

    def __init__(
        self, *, writes_per_s: int | None = None, writes_per_minute: int | None = None,
        writes_per_day: int | None = None, modifications_per_order: int | None = None,
        reads_per_s: int | None = None, today: Callable[[], dt.date] = _today,
    ) -> None:
        self._writes = (_Window(writes_per_s, 1.0, "rate_limit_per_s"),
                        _Window(writes_per_minute, 60.0, "rate_limit_per_minute"))
        self._day = _Daily(writes_per_day, today)
        self._reads = _Window(reads_per_s, 1.0, "read_limit_per_s")
        if modifications_per_order is not None and modifications_per_order < 1:
            raise input_error("modifications_per_order must be positive or None")
        self._modifications_limit = modifications_per_order
        self._modifications: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()  # by limit's name

    def reset(self) -> None:
        for window in (*self._writes, self._day, self._reads):
            window.reset()
        self._modifications.clear()
        self.refused.clear()

    def _refuse(self, name: str, what: str) -> VenueError:
        self.refused[name] += 1
        return _too_many(what)

    def check_write(self, account: str) -> None:
        now = trio.current_time()
        for window in self._writes:
            if window.full(account, now):
                raise self._refuse(window.name, f"at most {window.limit} orders "
                                   f"{'a second' if window.name.endswith('_s') else 'a minute'}")
        if self._day.full(account):
            raise self._refuse("rate_limit_per_day", f"at most {self._day.limit} orders a day")
        for window in self._writes:
            window.count(account, now)
        self._day.count(account)

    def check_modify(self, order_id: str) -> None:
        """Before `check_write` of a modify: Kite allows ~25 modifications of one order."""
        limit = self._modifications_limit
        if limit is not None and self._modifications[order_id] >= limit:
            raise self._refuse("modifications_per_order",
                               f"at most {limit} modifications of one order")

    def count_modify(self, order_id: str) -> None:
        self._modifications[order_id] += 1

    def check_read(self, account: str) -> None:
        now = trio.current_time()
        if self._reads.full(account, now):
            raise self._refuse("read_limit_per_s",
                               f"at most {self._reads.limit} reads a second")
        self._reads.count(account, now)

    def public(self) -> dict[str, object]:
        return {"refused": dict(self.refused)}
