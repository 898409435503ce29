"""Reading Kite's derivative tradingsymbols, so that an unknown one can be explained.

A client that sends last month's contract should hear that it expired and which contracts of
the same underlying and type trade now, not only "not a known instrument". Kite names them:

- monthly: `NIFTY25NOVFUT`, `NIFTY25NOV24000CE` (name, 2-digit year, month, strike, CE/PE);
- weekly options: `NIFTY25N1124000CE` (name, year, month as 1-9/O/N/D, day, strike, CE/PE).

Nothing here substitutes a symbol: it only describes one.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Callable, Sequence

import attrs

from .instruments import InstrumentInfo

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKLY_MONTHS = "123456789OND"
_NAME = r"(?P<name>[A-Z][A-Z0-9&-]*?)(?P<yy>\d{2})"
_STRIKE = r"(?P<strike>\d+(?:\.\d+)?)(?P<kind>CE|PE)"
_MONTHLY = re.compile(rf"{_NAME}(?P<mon>{'|'.join(_MONTHS)})(?:(?P<fut>FUT)|{_STRIKE})")
_WEEKLY = re.compile(rf"{_NAME}(?P<m>[1-9OND])(?P<dd>\d{{2}}){_STRIKE}")

#: How many current contracts an "expired" message names.
SUGGESTIONS = 3

#: The current contracts of (exchange, underlying name, instrument type), sorted by expiry.
Contracts = Callable[[str, str, str], Sequence[InstrumentInfo]]


@attrs.frozen
class Contract:
    """A parsed derivative symbol. `series` is the symbol's prefix naming its expiry (every
    strike of that expiry starts with it); `last_day` is the latest day it can expire on."""

    name: str
    kind: str  # FUT, CE or PE
    series: str
    last_day: dt.date
    strike: float = 0.0
    weekly: bool = False


def parse(symbol: str) -> Contract | None:
    """The contract `symbol` names in either of Kite's formats, or None."""
    if found := _MONTHLY.fullmatch(symbol):
        year, month = 2000 + int(found["yy"]), _MONTHS.index(found["mon"]) + 1
        last = dt.date(year, month, calendar.monthrange(year, month)[1])
        series = f"{found['name']}{found['yy']}{found['mon']}"
        if found["fut"]:
            return Contract(found["name"], "FUT", series, last)
        return Contract(found["name"], found["kind"], series, last, float(found["strike"]))
    if found := _WEEKLY.fullmatch(symbol):
        month = _WEEKLY_MONTHS.index(found["m"]) + 1
        try:
            day = dt.date(2000 + int(found["yy"]), month, int(found["dd"]))
        except ValueError:
            return None
        series = f"{found['name']}{found['yy']}{found['m']}{found['dd']}"
        return Contract(found["name"], found["kind"], series, day, float(found["strike"]), True)
    return None


def expired_message(
    exchange: str, symbol: str, today: dt.date, contracts: Contracts
) -> str | None:
    """Why `symbol` (not in the master) is unknown when it names an expired contract, with the
    nearest current contracts of its underlying and type; None when it does not."""
    contract = parse(symbol)
    if contract is None:
        return None
    current = contracts(exchange, contract.name, contract.kind)
    if any(info.tradingsymbol.startswith(contract.series) for info in current):
        return None  # its expiry still trades: a wrong strike, not an expired contract
    earliest = min((i.expiry for i in current if i.expiry is not None), default=None)
    if not (contract.last_day < today or (earliest is not None and contract.last_day < earliest)):
        return None
    when = (f"on {contract.last_day:%d %b %Y}" if contract.weekly
            else f"in {contract.last_day:%b %Y}")
    text = f"{exchange}:{symbol} expired {when}"
    nearest = _nearest(contract, current)
    if not nearest:
        return f"{text}; no {contract.name} {contract.kind} contract is listed now"
    return f"{text}; current {contract.name} {contract.kind} contracts: {', '.join(nearest)}"


def _nearest(contract: Contract, current: Sequence[InstrumentInfo]) -> list[str]:
    """Futures: the next expiries. Options: the strikes nearest the asked one, at the nearest
    expiry, in strike order."""
    dated = [i for i in current if i.expiry is not None]
    if contract.kind == "FUT":
        return [i.tradingsymbol for i in sorted(dated, key=lambda i: i.expiry)][:SUGGESTIONS]
    if not dated:
        return []
    first = min(i.expiry for i in dated)
    near = sorted((i for i in dated if i.expiry == first),
                  key=lambda i: (abs(i.strike - contract.strike), i.strike))[:SUGGESTIONS]
    return [i.tradingsymbol for i in sorted(near, key=lambda i: i.strike)]
