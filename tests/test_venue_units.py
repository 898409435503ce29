"""Pure parts of the venue: expiries, the master, the price walk, margins, fault parsing."""

from __future__ import annotations

import datetime as dt

import attrs
import pytest

from brokers.paper import VenueConfig
from brokers.paper.errors import VenueError
from brokers.paper.faults import Faults, parse_faults
from brokers.paper.instruments import builtin_master, last_tuesday, load_csv, monthly_expiries
from brokers.paper.margins import Leg, basket, leg_margin
from brokers.paper.prices import PriceBook
from tests.fixtures_venue import kite_instruments_csv


@attrs.frozen
class ExpiryCase:
    today: dt.date
    expected: tuple[dt.date, dt.date]


@pytest.mark.parametrize("case", [
    ExpiryCase(dt.date(2026, 12, 1), (dt.date(2026, 12, 29), dt.date(2027, 1, 26))),
    ExpiryCase(dt.date(2026, 12, 29), (dt.date(2026, 12, 29), dt.date(2027, 1, 26))),
    ExpiryCase(dt.date(2026, 12, 30), (dt.date(2027, 1, 26), dt.date(2027, 2, 23))),
], ids=str)
def test_monthly_expiries_are_last_tuesdays(case: ExpiryCase):
    assert tuple(monthly_expiries(case.today)) == case.expected
    assert last_tuesday(2025, 9) == dt.date(2025, 9, 30)


def test_builtin_master():
    master = builtin_master(dt.date(2026, 12, 1), {"BANKNIFTY": 900})
    fut = master.get("NFO", "NIFTY26DECFUT")
    assert fut is not None and (fut.lot_size, fut.freeze_quantity) == (75, 1800)
    ce = master.get("NFO", "NIFTY26DEC24000CE")
    assert ce is not None and ce.strike == 24000 and ce.expiry == dt.date(2026, 12, 29)
    assert master.get("NFO", "NIFTY27JAN23500PE") is not None
    bank = master.get("NFO", "BANKNIFTY26DEC52000PE")
    assert bank is not None and (bank.lot_size, bank.freeze_quantity) == (35, 900)
    assert master.get("NSE", "SBIN") is not None
    options = [i for i in master.instruments if i.is_option and i.name == "NIFTY"]
    assert len(options) == 2 * 21 * 2


def test_kite_csv_loads():
    master = load_csv(kite_instruments_csv(), {})
    assert len(master.instruments) == 5
    option = master.get("NFO", "BANKNIFTY18JAN23500CE")
    assert option is not None and option.lot_size == 40 and option.expiry == dt.date(2018, 1, 25)
    assert load_csv(master.to_csv(), {}).instruments == master.instruments
    with pytest.raises(ValueError):
        load_csv("a,b\n1,2\n", {})


def test_price_walk_is_deterministic_per_seed():
    master = builtin_master(dt.date(2026, 12, 1), {})
    fut = master.get("NFO", "NIFTY26DECFUT")
    assert fut is not None

    def walk(seed: int) -> list[float]:
        book = PriceBook(master, seed)
        out = []
        for _ in range(20):
            book.step()
            out.append(book.ltp(fut))
        return out

    assert walk(42) == walk(42)
    assert walk(42) != walk(7)
    assert all(round(p / 0.05, 6).is_integer() for p in walk(42))


def test_margin_model():
    master = builtin_master(dt.date(2026, 12, 1), {})
    fut, ce = master.get("NFO", "NIFTY26DECFUT"), master.get("NFO", "NIFTY26DEC24000CE")
    assert fut is not None and ce is not None
    short_fut = Leg(fut, "SELL", 75, 24000.0, "NRML", 0.0)
    long_call = Leg(ce, "BUY", 75, 100.0, "NRML", 24000.0)
    short_call = Leg(ce, "SELL", 75, 100.0, "NRML", 24000.0)
    assert leg_margin(short_fut).total == pytest.approx(0.12 * 75 * 24000)
    assert leg_margin(long_call).total == pytest.approx(7500)
    assert leg_margin(short_call).total == pytest.approx(0.15 * 75 * 24000)
    hedged = basket([short_fut, long_call])
    assert hedged["initial"]["total"] == pytest.approx(0.12 * 75 * 24000 + 7500)
    assert hedged["final"]["total"] == pytest.approx(0.3 * 0.12 * 75 * 24000 + 7500)
    unhedged = basket([short_fut, short_call])
    assert unhedged["final"]["total"] == pytest.approx(unhedged["initial"]["total"])


def test_fault_parsing_and_nth_order():
    faults = Faults()
    parse_faults({"fail_nth_order": 3, "reject_symbols": ["SBIN"]}).apply(faults)
    assert [faults.count_order() for _ in range(4)] == [False, False, True, False]
    assert faults.rejects("NSE", "SBIN") and not faults.rejects("NSE", "INFY")
    for bad in ({"partial_fill_ratio": 1.5}, {"stall_ticker": "yes"}, {"latency_ms": True},
                {"reject_symbols": "SBIN"}, []):
        with pytest.raises(VenueError):
            parse_faults(bad)


def test_dropped_order_frames_are_the_ratio_spread_evenly():
    faults = Faults()
    parse_faults({"drop_order_frames_ratio": 0.3}).apply(faults)
    dropped = [faults.drops_order_frame() for _ in range(20)]
    assert sum(dropped) == 6 and not any(map(min, zip(dropped, dropped[1:], strict=False)))
    faults.clear()
    assert not any(faults.drops_order_frame() for _ in range(10))
    for bad in (1, -0.1, "0.3", True, float("nan")):
        with pytest.raises(VenueError, match="drop_order_frames_ratio"):
            parse_faults({"drop_order_frames_ratio": bad})


def test_config_checks_session_times():
    with pytest.raises(ValueError):
        VenueConfig(session_open="9:15")
    assert VenueConfig(freeze_limits={"NIFTY": 900}).freeze_limits["NIFTY"] == 900
