"""The trading calendar: each exchange's session hours, weekends and the holiday list (IST),
and the daily instant the instrument master is refreshed.

Orders are refused before they reach the broker when their exchange is closed: NSE's F&O
closes at 15:30 but MCX trades until 23:30, and on a trading holiday none of them opens.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

#: India has had no daylight saving since 1945: a fixed offset is exact.
IST = dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")


def trading_day(timestamp: float | None = None) -> dt.date:
    """The trading day (IST) of a Unix time, now by default: Kite's timestamps spell IST dates
    and the broker lists that day's orders only."""
    if timestamp is None:
        return dt.datetime.now(IST).date()
    return dt.datetime.fromtimestamp(timestamp, IST).date()


#: When the day's instrument master is loaded (lot and freeze sizes change overnight).
DEFAULT_INSTRUMENT_REFRESH = dt.time(8, 30)


@attrs.frozen
class SessionHours:
    """When one exchange takes orders (IST), on which weekdays (Monday is 0)."""

    open: dt.time = dt.time(9, 15)
    close: dt.time = dt.time(15, 30)
    weekdays: frozenset[int] = frozenset(range(5))

    def is_open(self, now: dt.datetime) -> bool:
        local = now.astimezone(IST)
        return local.weekday() in self.weekdays and self.open <= local.time() <= self.close

    def describe(self) -> str:
        return f"{self.open:%H:%M}-{self.close:%H:%M} IST on weekdays"


_EQUITY = SessionHours()
_CURRENCY = SessionHours(dt.time(9, 0), dt.time(17, 0))
_COMMODITY = SessionHours(dt.time(9, 0), dt.time(23, 30))
DEFAULT_SESSIONS: Mapping[str, SessionHours] = MappingProxyType({
    "NSE": _EQUITY, "NFO": _EQUITY, "BSE": _EQUITY, "BFO": _EQUITY,
    "CDS": _CURRENCY, "BCD": _CURRENCY, "MCX": _COMMODITY,
})
EXCHANGES_WITH_SESSIONS = frozenset(DEFAULT_SESSIONS)


@attrs.frozen
class Closed:
    """Why an exchange takes no orders now: `rule` is `holiday` or `session`."""

    rule: str
    message: str


def _sessions(value: Mapping[str, SessionHours]) -> Mapping[str, SessionHours]:
    return MappingProxyType({**DEFAULT_SESSIONS, **value})


@attrs.frozen
class TradingCalendar:
    """Session hours per exchange (the defaults above, overridden by `sessions`) and the
    holidays on which no exchange opens."""

    sessions: Mapping[str, SessionHours] = attrs.field(
        factory=dict, converter=_sessions, eq=False, hash=False)
    holidays: frozenset[dt.date] = attrs.field(default=frozenset(), converter=frozenset)

    def closed(self, exchange: str, now: dt.datetime) -> Closed | None:
        """None while `exchange` takes orders at `now`, else why not."""
        local = now.astimezone(IST)
        if local.date() in self.holidays:
            return Closed("holiday", f"{exchange} is closed on {local.date():%Y-%m-%d}, "
                                     "a trading holiday")
        hours = self.sessions.get(exchange, _EQUITY)
        if not hours.is_open(local):
            return Closed("session", f"{exchange} takes orders {hours.describe()}")
        return None


def last_refresh(now: dt.datetime, at: dt.time = DEFAULT_INSTRUMENT_REFRESH) -> dt.datetime:
    """The latest daily refresh instant (`at` IST) at or before `now`."""
    local = now.astimezone(IST)
    today = dt.datetime.combine(local.date(), at, IST)
    return today if today <= local else today - dt.timedelta(days=1)


def parse_holidays(values: Iterable[object], where: str) -> frozenset[dt.date]:
    """ISO dates (`2026-12-25`); ValueError naming `where` and the bad value."""
    days = set()
    for n, value in enumerate(values):
        try:
            days.add(dt.date.fromisoformat(str(value)))
        except ValueError:
            raise ValueError(f"{where}[{n}]: must be a date YYYY-MM-DD, not {value!r}") from None
    return frozenset(days)
