"""The trading calendar (issue 12, item 6): each exchange's own hours, weekends and the holiday
list decide whether an order may go, and the instrument master is reloaded at a fixed time of
day (08:30 IST) so a lot size changed overnight takes effect."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from actors.calendar import IST, SessionHours, TradingCalendar, last_refresh
from actors.instruments import InstrumentCache, InstrumentInfo
from actors.requests import LegRequest
from actors.validation import InvalidRequest, validate_order
from brokers.paper.instruments import InstrumentMaster, builtin_master
from supervision.settings import ConfigError, load_settings
from tests.fixtures_service import TOKENS, api, open_test_service
from tests.fixtures_venue import NIFTY_FUT, MasterBroker, kite_headers
from tests.fixtures_web import typed

MONDAY = dt.date(2026, 3, 2)
CHRISTMAS = dt.date(2026, 12, 25)  # a Friday
CALENDAR = TradingCalendar(holidays=[CHRISTMAS])


def _at(day: dt.date, hh: int, mm: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hh, mm), IST)


@attrs.frozen
class Case:
    exchange: str
    when: dt.datetime
    rule: str | None  # None: open


CASES = [
    Case("NFO", _at(MONDAY, 9, 15), None),
    Case("NFO", _at(MONDAY, 15, 31), "session"),
    Case("BFO", _at(MONDAY, 15, 31), "session"),
    Case("NSE", _at(MONDAY, 9, 0), "session"),
    Case("MCX", _at(MONDAY, 9, 0), None),
    Case("MCX", _at(MONDAY, 21, 0), None),  # after NSE's close, MCX still trades
    Case("MCX", _at(MONDAY, 23, 31), "session"),
    Case("CDS", _at(MONDAY, 16, 59), None),
    Case("CDS", _at(MONDAY, 17, 1), "session"),
    Case("MCX", _at(dt.date(2026, 3, 7), 11, 0), "session"),  # a Saturday
    Case("NFO", _at(CHRISTMAS, 11, 0), "holiday"),
    Case("MCX", _at(CHRISTMAS, 20, 0), "holiday"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.exchange}-{c.when:%a%H%M}-{c.rule}")
def test_each_exchange_has_its_own_hours_and_the_holidays(case: Case) -> None:
    def lookup(exchange: str, symbol: str) -> InstrumentInfo:
        return InstrumentInfo(exchange, symbol, 1, 0.05)

    order = {"tradingsymbol": "X", "exchange": case.exchange, "transaction_type": "BUY",
             "quantity": 1, "order_type": "LIMIT", "price": 10, "product": "NRML"}
    if case.rule is None:
        validate_order(typed(order, LegRequest)[0], lookup, session=CALENDAR, now=case.when)
        return
    with pytest.raises(InvalidRequest) as info:
        validate_order(typed(order, LegRequest)[0], lookup, session=CALENDAR, now=case.when)
    [problem] = info.value.fields
    assert (problem.path, problem.rule) == ("exchange", case.rule)
    assert case.exchange in problem.message


def test_calendar_configuration(tmp_path: Path) -> None:
    base = '[server]\nadmin_token = "a"\n[[accounts]]\nid = "p"\n[venue]\n'

    def load(calendar: str) -> TradingCalendar | None:
        path = tmp_path / "c.toml"
        path.write_text(base + calendar)
        settings = load_settings(str(path), environ={})
        assert settings.instrument_refresh == (dt.time(7, 45) if "07:45" in calendar
                                               else dt.time(8, 30))
        return settings.calendar

    assert load("") is None
    loaded = load('[calendar]\nholidays = ["2026-12-25", 2026-10-20]\n'
                  'sessions = { MCX = "09:00-23:55" }\ninstrument_refresh = "07:45"\n')
    assert loaded is not None
    assert loaded.holidays == {CHRISTMAS, dt.date(2026, 10, 20)}
    assert loaded.sessions["MCX"] == SessionHours(dt.time(9), dt.time(23, 55))
    assert loaded.sessions["NFO"] == SessionHours()
    for bad, message in [
        ('holidays = ["25/12/2026"]', r"calendar.holidays\[0\]: must be a date YYYY-MM-DD"),
        ('holidays = "2026-12-25"', "calendar.holidays: must be a list"),
        ('sessions = { MCX = "9-late" }', 'calendar.sessions.MCX: must be "HH:MM-HH:MM"'),
        ('sessions = { LSE = "08:00-16:30" }', "calendar.sessions.LSE: unknown exchange"),
        ('instrument_refresh = "half past eight"', "calendar.instrument_refresh: must be"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load(f"[calendar]\n{bad}\n")


async def test_orders_on_a_configured_holiday_are_refused_before_the_broker(
    tmp_path: Path,
) -> None:
    today = dt.datetime.now(IST).date()
    order = {"tradingsymbol": NIFTY_FUT, "exchange": "NFO", "transaction_type": "BUY",
             "quantity": 75, "order_type": "MARKET", "product": "NRML"}
    with trio.fail_after(30):
        async with open_test_service(
            tmp_path, extra_toml=f'[calendar]\nholidays = ["{today.isoformat()}"]\n'
        ) as running, api(running, TOKENS["primary"]) as http:
            single = await http.post("/accounts/primary/orders", json=order)
            batch = await http.post("/accounts/primary/batch-orders",
                                    json={"orders": [order, {**order, "quantity": 150}]})
            assert running.venue is not None
            async with httpx.AsyncClient(base_url=running.venue.rest_url) as venue:
                listing = await venue.get("/orders", headers=kite_headers())
    assert single.status_code == 422, single.text
    assert [(f["path"], f["rule"]) for f in single.json()["fields"]] == [("exchange", "holiday")]
    assert today.isoformat() in single.json()["fields"][0]["message"]
    assert batch.status_code == 422, batch.text
    assert [(f["path"], f["rule"]) for f in batch.json()["fields"]] == [
        ("orders[0].exchange", "holiday"), ("orders[1].exchange", "holiday")]
    assert listing.json()["data"] == []  # nothing reached the venue


def _relot(master: InstrumentMaster, symbol: str, lot_size: int) -> InstrumentMaster:
    return InstrumentMaster(tuple(
        attrs.evolve(i, lot_size=lot_size) if i.tradingsymbol == symbol else i
        for i in master.instruments))


@pytest.mark.parametrize("refresh_at", [dt.time(8, 30), dt.time(7, 0)])
async def test_the_master_reloads_at_the_refresh_time_and_new_lots_apply(
    autojump_clock: trio.abc.Clock, refresh_at: dt.time
) -> None:
    start = _at(MONDAY, 6, 0)
    origin = trio.current_time()

    def clock() -> dt.datetime:  # the wall clock, driven by the autojumping Trio clock
        return start + dt.timedelta(seconds=trio.current_time() - origin)

    async def sleep_until(hh: int, mm: int, day: dt.date = MONDAY) -> None:
        await trio.sleep((_at(day, hh, mm) - clock()).total_seconds())

    master = builtin_master(dt.datetime.now(IST).date(), {})  # NIFTY_FUT is of today
    broker = MasterBroker(master)
    cache = InstrumentCache(broker, refresh_at=refresh_at, clock=clock)
    order = {"tradingsymbol": NIFTY_FUT, "exchange": "NFO", "transaction_type": "BUY",
             "quantity": 75, "order_type": "MARKET", "product": "NRML"}
    refresh = dt.datetime.combine(MONDAY, refresh_at, IST)
    with trio.fail_after(3 * 86_400):
        await sleep_until(refresh_at.hour - 1, 0)
        await cache.load(["NFO"])
        assert (broker.fetches, cache.get("NFO", NIFTY_FUT).lot_size) == (1, 75)
        broker.master = _relot(master, NIFTY_FUT, 65)  # the exchange revises the lot overnight
        await trio.sleep((refresh - clock()).total_seconds() - 60)
        await cache.load(["NFO"])  # a minute before the refresh: yesterday's master stands
        assert (broker.fetches, cache.get("NFO", NIFTY_FUT).lot_size) == (1, 75)
        validate_order(typed(order, LegRequest)[0], cache.get)

        await trio.sleep(61)
        assert last_refresh(clock(), refresh_at) == refresh
        await cache.load(["NFO"])
        assert (broker.fetches, cache.get("NFO", NIFTY_FUT).lot_size) == (2, 65)
        with pytest.raises(InvalidRequest) as info:
            validate_order(typed(order, LegRequest)[0], cache.get)
        assert [(f.path, f.rule) for f in info.value.fields] == [("quantity", "lot_multiple")]
        validate_order(typed({**order, "quantity": 130}, LegRequest)[0], cache.get)

        await sleep_until(23, 0)  # later that day: loaded, nothing more to fetch
        await cache.load(["NFO"])
        await sleep_until(refresh_at.hour, refresh_at.minute + 1, MONDAY + dt.timedelta(1))
        await cache.load(["NFO"])  # the next morning's refresh
        assert broker.fetches == 3
