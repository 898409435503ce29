"""Order ids that never repeat, not even across venue restarts with no saved state.

Kite's order ids are 15 digits that grow through the day (`YYMMDD` + 9 digits). Here the 9 digits
are the milliseconds since IST midnight times ten, and each id is at least one more than the last:
a restarted venue starts above every id the previous run handed out (short of it having handed
out more than ten ids per millisecond for longer than the restart took). A venue with a state file
also starts above the last id it saved.
"""

from __future__ import annotations

import datetime as dt

from .config import IST

_PER_MS = 10


def _floor(now: dt.datetime) -> int:
    """The smallest id of this millisecond."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    ms = (now - midnight) // dt.timedelta(milliseconds=1)
    return int(f"{now:%y%m%d}{ms * _PER_MS:09d}")


class OrderIds:
    """Hands out order ids: growing, 15 digits, never one handed out before."""

    def __init__(self) -> None:
        self._last = 0

    @property
    def last(self) -> int:
        return self._last

    def seen(self, order_id: str | int) -> None:
        """An id handed out earlier (restored from a state file): never hand it out again."""
        self._last = max(self._last, int(order_id))

    def next(self, now: dt.datetime | None = None) -> str:
        self._last = max(self._last + 1, _floor(now or dt.datetime.now(IST)))
        return f"{self._last:015d}"
