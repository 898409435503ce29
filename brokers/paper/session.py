"""The venue's trading session: its hours (changeable at run time through `/_venue/session`)
and Kite's refusal of orders outside them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .config import IST, parse_clock
from .errors import input_error

CLOSED_MESSAGE = "Markets are closed right now. Use GTT for placing long standing orders instead."


class Session:
    def __init__(self, open_: str, close: str) -> None:
        self.open, self.close, self.closed = parse_clock(open_), parse_clock(close), False

    def is_open(self, now: dt.time) -> bool:
        return not self.closed and self.open <= now <= self.close

    def check(self) -> None:
        """Refuse, as Kite does, an order placed or modified outside the session."""
        if not self.is_open(dt.datetime.now(IST).time().replace(microsecond=0)):
            raise input_error(CLOSED_MESSAGE)

    def public(self) -> dict[str, Any]:
        return {"open": self.open.isoformat(), "close": self.close.isoformat(),
                "closed": self.closed}
