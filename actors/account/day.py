"""The trading day turning over while an account runs: its book keeps the new day's orders
only, as a start on that day would (`OrderBook.roll`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import trio

from ..calendar import IST, trading_day

__all__ = ["roll_daily", "seconds_to_next_day"]

#: Woken this long after midnight IST, so that the wall clock surely reads the new day.
_MARGIN_S = 0.5


def seconds_to_next_day(now: float) -> float:
    """Seconds from the Unix time `now` to the next midnight IST."""
    local = dt.datetime.fromtimestamp(now, IST)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), IST)
    return midnight.timestamp() - now


async def roll_daily(clock: Callable[[], float], on_new_day: Callable[[str], None]) -> None:
    """Call `on_new_day(YYYY-MM-DD)` at each IST midnight of `clock` (Unix time), forever."""
    day = trading_day(clock())
    while True:
        await trio.sleep(seconds_to_next_day(clock()) + _MARGIN_S)
        today = trading_day(clock())
        if today != day:
            day = today
            on_new_day(today.isoformat())
