"""The instrument master: a small built-in NSE/NFO set, or a Kite instruments CSV.

The built-in master, computed from today's date (IST):

- NIFTY and BANKNIFTY futures for the current and the next monthly expiry (the last Tuesday of the
  month; the current one is this month's unless it has passed), named the Kite way
  (`NIFTY26DECFUT`);
- for each of those expiries a ladder of CE/PE options, ±10 strikes around the base price
  (NIFTY step 50, BANKNIFTY step 100; `NIFTY26DEC24000CE`);
- lot sizes NIFTY 75, BANKNIFTY 35; tick 0.05; freeze quantities NIFTY 1800, BANKNIFTY 600
  (overridable by name through `VenueConfig.freeze_limits`);
- ten NSE equities, lot 1, tick 0.05, no freeze quantity.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
from collections.abc import Mapping

import attrs

from ..kite_ticks import Segment, instrument_token

CSV_COLUMNS = (
    "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,"
    "lot_size,instrument_type,segment,exchange"
).split(",")

BUILTIN_FREEZE = {"NIFTY": 1800, "BANKNIFTY": 600}

_INDICES = (
    # name, base price, strike step, lot size, first exchange token (the instrument token is
    # the exchange token shifted left a byte, the segment in the low byte, as Kite's are)
    ("NIFTY", 24000.0, 50, 75, 35_000),
    ("BANKNIFTY", 52000.0, 100, 35, 37_000),
)
_EQUITIES = (
    ("SBIN", "STATE BANK OF INDIA", 779521, 800.0),
    ("INFY", "INFOSYS", 408065, 1500.0),
    ("RELIANCE", "RELIANCE INDUSTRIES", 738561, 1300.0),
    ("TCS", "TATA CONSULTANCY SERV", 2953217, 3500.0),
    ("HDFCBANK", "HDFC BANK", 341249, 1700.0),
    ("ICICIBANK", "ICICI BANK", 1270529, 1250.0),
    ("ITC", "ITC", 424961, 450.0),
    ("LT", "LARSEN & TOUBRO", 2939649, 3600.0),
    ("AXISBANK", "AXIS BANK", 1510401, 1150.0),
    ("KOTAKBANK", "KOTAK MAHINDRA BANK", 492033, 1800.0),
)
_STRIKES_EACH_SIDE = 10


@attrs.frozen
class Instrument:
    instrument_token: int
    exchange_token: int
    tradingsymbol: str
    name: str
    last_price: float
    expiry: dt.date | None
    strike: float
    tick_size: float
    lot_size: int
    instrument_type: str  # EQ, FUT, CE, PE
    segment: str
    exchange: str
    freeze_quantity: int | None = None

    @property
    def key(self) -> str:
        return f"{self.exchange}:{self.tradingsymbol}"

    @property
    def is_option(self) -> bool:
        return self.instrument_type in ("CE", "PE")

    @property
    def underlying(self) -> str:
        """The name that groups derivatives of one underlying (falls back to the symbol)."""
        return self.name or self.tradingsymbol


@attrs.frozen
class InstrumentMaster:
    instruments: tuple[Instrument, ...]
    _by_key: Mapping[str, Instrument] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {i.key: i for i in self.instruments})

    def get(self, exchange: str, tradingsymbol: str) -> Instrument | None:
        return self._by_key.get(f"{exchange}:{tradingsymbol}")

    def by_key(self, key: str) -> Instrument | None:
        return self._by_key.get(key)

    def front_future(self, name: str) -> Instrument | None:
        futures = [i for i in self.instruments if i.instrument_type == "FUT" and i.name == name]
        return min(futures, key=lambda i: i.expiry or dt.date.max, default=None)

    def to_csv(self, exchange: str | None = None) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for i in self.instruments:
            if exchange is not None and i.exchange != exchange:
                continue
            writer.writerow([
                i.instrument_token, i.exchange_token, i.tradingsymbol, i.name, i.last_price,
                i.expiry.isoformat() if i.expiry else "", float(i.strike), i.tick_size,
                i.lot_size, i.instrument_type, i.segment, i.exchange,
            ])
        return out.getvalue()


def last_tuesday(year: int, month: int) -> dt.date:
    last = dt.date(year, month, calendar.monthrange(year, month)[1])
    return last - dt.timedelta(days=(last.weekday() - calendar.TUESDAY) % 7)


def monthly_expiries(today: dt.date, count: int = 2) -> list[dt.date]:
    year, month = today.year, today.month
    found: list[dt.date] = []
    while len(found) < count:
        expiry = last_tuesday(year, month)
        if expiry >= today:
            found.append(expiry)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def _round_tick(price: float, tick: float = 0.05) -> float:
    return round(round(price / tick) * tick, 2)


def _option_premium(spot: float, strike: float, kind: str) -> float:
    intrinsic = max(0.0, spot - strike) if kind == "CE" else max(0.0, strike - spot)
    time_value = max(0.004 * spot - 0.25 * abs(spot - strike), 0.0005 * spot)
    return _round_tick(intrinsic + time_value)


def _freeze(name: str, overrides: Mapping[str, int]) -> int | None:
    return overrides.get(name, BUILTIN_FREEZE.get(name))


def builtin_master(today: dt.date, freeze_limits: Mapping[str, int]) -> InstrumentMaster:
    out: list[Instrument] = []
    for name, base, step, lot, token in _INDICES:
        freeze = _freeze(name, freeze_limits)
        for expiry in monthly_expiries(today):
            stem = f"{name}{expiry:%y}{expiry:%b}".upper()
            out.append(Instrument(
                instrument_token(token, Segment.NFO), token, f"{stem}FUT", name,
                _round_tick(base), expiry, 0.0, 0.05, lot, "FUT", "NFO-FUT", "NFO", freeze,
            ))
            token += 1
            atm = round(base / step) * step
            for k in range(-_STRIKES_EACH_SIDE, _STRIKES_EACH_SIDE + 1):
                strike = float(atm + k * step)
                for kind in ("CE", "PE"):
                    out.append(Instrument(
                        instrument_token(token, Segment.NFO), token, f"{stem}{int(strike)}{kind}",
                        name, _option_premium(base, strike, kind), expiry, strike, 0.05, lot,
                        kind, "NFO-OPT", "NFO", freeze,
                    ))
                    token += 1
    for symbol, company, token, price in _EQUITIES:
        out.append(Instrument(
            token, token // 256, symbol, company, price, None, 0.0, 0.05, 1, "EQ", "NSE", "NSE",
        ))
    return InstrumentMaster(tuple(out))


def load_csv(text: str, freeze_limits: Mapping[str, int]) -> InstrumentMaster:
    """Parse a Kite instruments dump (the columns of `CSV_COLUMNS`)."""
    reader = csv.DictReader(io.StringIO(text))
    missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"instruments CSV lacks columns {sorted(missing)}")
    return InstrumentMaster(tuple(_from_row(row, freeze_limits) for row in reader))


def _from_row(row: Mapping[str, str], freeze_limits: Mapping[str, int]) -> Instrument:
    expiry = dt.date.fromisoformat(row["expiry"]) if row["expiry"] else None
    return Instrument(
        int(row["instrument_token"]), int(row["exchange_token"]), row["tradingsymbol"],
        row["name"], float(row["last_price"] or 0), expiry, float(row["strike"] or 0),
        float(row["tick_size"] or 0.05), int(row["lot_size"] or 1), row["instrument_type"],
        row["segment"], row["exchange"], _freeze(row["name"], freeze_limits),
    )
