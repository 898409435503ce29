"""Errors that help: an expired contract is named as expired with the current ones of its
underlying and type; a lot-multiple error names the lot size and the valid quantities around
the one asked. Nothing is substituted: the order is still refused.

The master is a Kite instruments CSV read through `InstrumentCache` (monthly and weekly
series); the last test goes through the running service and its paper venue."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import trio

from actors.instruments import InstrumentCache
from actors.money import rupees
from actors.orders.validation import (
    IST,
    InvalidRequest,
    freeze_message,
    lot_message,
    validate_order,
)
from actors.requests import LegRequest
from actors.symbols import parse
from brokers.paper.instruments import builtin_master, load_csv
from tests.fixtures_service import api, open_test_service, venue_control
from tests.fixtures_venue import NIFTY_FUT, MasterBroker, kite_headers
from tests.fixtures_web import typed

NOW = dt.datetime(2025, 12, 3, 10, 0, tzinfo=IST)
_HEADER = ("instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,"
           "tick_size,lot_size,instrument_type,segment,exchange")
_ROWS = [  # a weekly series (9 Dec), the December monthly (30 Dec), the January future
    ("NIFTY25D0923900CE", "2025-12-09", 23900, "CE"),
    ("NIFTY25D0924000CE", "2025-12-09", 24000, "CE"),
    ("NIFTY25D0924100CE", "2025-12-09", 24100, "CE"),
    ("NIFTY25D0924200CE", "2025-12-09", 24200, "CE"),
    ("NIFTY25D0924000PE", "2025-12-09", 24000, "PE"),
    ("NIFTY25DEC24000CE", "2025-12-30", 24000, "CE"),
    ("NIFTY25DECFUT", "2025-12-30", 0, "FUT"),
    ("NIFTY26JANFUT", "2026-01-27", 0, "FUT"),
    ("BANKNIFTY25DECFUT", "2025-12-30", 0, "FUT"),
]


def _csv() -> str:
    lines = [_HEADER]
    for n, (symbol, expiry, strike, kind) in enumerate(_ROWS):
        segment = "NFO-FUT" if kind == "FUT" else "NFO-OPT"
        lines.append(f"{1000 + n},{n},{symbol},NIFTY,0.0,{expiry},{strike},0.05,75,{kind},"
                     f"{segment},NFO")
    return "\n".join(lines).replace("BANKNIFTY25DECFUT,NIFTY", "BANKNIFTY25DECFUT,BANKNIFTY")


@pytest.fixture
async def cache() -> InstrumentCache:
    loaded = InstrumentCache(MasterBroker(load_csv(_csv(), {"NIFTY": 1800})))
    await loaded.load(["NFO"])
    return loaded


def refusal(cache: InstrumentCache, symbol: str, quantity: int = 75) -> tuple[str, str]:
    order = {"tradingsymbol": symbol, "exchange": "NFO", "transaction_type": "BUY",
             "quantity": quantity, "order_type": "MARKET", "product": "NRML"}
    with pytest.raises(InvalidRequest) as info:
        validate_order(typed(order, LegRequest)[0], cache.get, now=NOW, contracts=cache.contracts)
    [field] = info.value.fields
    return field.rule, field.message


def test_kites_two_formats_parse() -> None:
    monthly = parse("NIFTY25NOV24000CE")
    assert monthly is not None and (monthly.name, monthly.kind, monthly.strike) == (
        "NIFTY", "CE", 24000.0)
    assert monthly.last_day == dt.date(2025, 11, 30) and not monthly.weekly
    future = parse("BANKNIFTY25NOVFUT")
    assert future is not None and (future.name, future.kind) == ("BANKNIFTY", "FUT")
    weekly = parse("NIFTY25N1124000CE")
    assert weekly is not None and weekly.weekly and weekly.last_day == dt.date(2025, 11, 11)
    assert parse("NIFTYNXT5025NOVFUT").name == "NIFTYNXT50"  # type: ignore[union-attr]
    assert parse("SBIN") is None and parse("NIFTY25N3124000CE") is None  # 31 November


EXPIRED = {  # a monthly option: the nearest strikes; a future: the next futures; a weekly
    # option: its day, and only its own type
    "NIFTY25NOV24000CE": "expired in Nov 2025; current NIFTY CE contracts: "
                         "NIFTY25D0923900CE, NIFTY25D0924000CE, NIFTY25D0924100CE",
    "NIFTY25NOVFUT": "expired in Nov 2025; current NIFTY FUT contracts: "
                     "NIFTY25DECFUT, NIFTY26JANFUT",
    "NIFTY25N1124000PE": "expired on 11 Nov 2025; current NIFTY PE contracts: "
                         "NIFTY25D0924000PE",
    "FINNIFTY25NOVFUT": "expired in Nov 2025; no FINNIFTY FUT contract is listed now",
}


@pytest.mark.parametrize("symbol", list(EXPIRED))
async def test_an_expired_contract_names_the_current_ones(
    cache: InstrumentCache, symbol: str
) -> None:
    assert refusal(cache, symbol) == ("expired_instrument", f"NFO:{symbol} {EXPIRED[symbol]}")


async def test_a_wrong_strike_of_a_live_series_is_only_unknown(cache: InstrumentCache) -> None:
    for symbol in ("NIFTY25DEC99999CE", "NIFTY25D0999999CE", "NOSUCH", "NIFTY27JANFUT"):
        assert refusal(cache, symbol) == (
            "unknown_instrument", f"NFO:{symbol} is not a known instrument")


def test_the_lot_message_names_the_valid_quantities() -> None:
    assert lot_message(50, 75, None) == (
        "quantity 50 is not a multiple of the lot size 75: use 75 (1 lot)")
    assert lot_message(100, 75, 1800) == (
        "quantity 100 is not a multiple of the lot size 75: use 75 (1 lot) or 150 (2 lots)")
    assert lot_message(1820, 75, 1800) == (  # 1875 is above the freeze quantity
        "quantity 1820 is not a multiple of the lot size 75: use 1800 (24 lots)")


def test_the_freeze_message_counts_in_lots_and_says_how_to_split() -> None:
    assert freeze_message(3600, 75, 1800) == (
        "quantity 3600 (48 lots) is above the freeze limit of 1800 (24 lots): split it into 2 "
        "orders of at most 24 lots")
    assert freeze_message(1875, 75, 1800).startswith("quantity 1875 (25 lots)")
    assert freeze_message(1875, 75, 1800).endswith("split it into 2 orders of at most 24 lots")


def test_rupees_in_messages_use_indian_grouping() -> None:
    assert rupees(25563168) == "₹2,55,63,168.00"
    assert rupees(100000) == "₹1,00,000.00"
    assert rupees(999.5) == "₹999.50"
    assert rupees(0) == "₹0.00"
    assert rupees(-1234567.891) == "-₹12,34,567.89"


async def test_the_old_batch_body_is_told_what_to_send(tmp_path: Path) -> None:
    """Through the service: last month's future and the old quantities (50, 25)."""
    today = dt.datetime.now(IST).date()
    master = builtin_master(today, {})
    expired = f"NIFTY{today - dt.timedelta(days=62):%y%b}FUT".upper()
    current = sorted((i for i in master.instruments if i.name == "NIFTY"
                      and i.instrument_type == "FUT"), key=lambda i: i.expiry or today)
    body = {"orders": [
        {"tradingsymbol": expired, "exchange": "NFO", "transaction_type": "BUY",
         "quantity": 75, "order_type": "MARKET", "product": "NRML"},
        {"tradingsymbol": NIFTY_FUT, "exchange": "NFO", "transaction_type": "BUY",
         "quantity": 50, "order_type": "MARKET", "product": "NRML"},
    ]}
    with trio.fail_after(30):
        async with (
            open_test_service(tmp_path) as running,
            api(running) as http,
            venue_control(running) as venue,
        ):
            response = await http.post("/accounts/primary/batch-orders", json=body)
            assert response.status_code == 422, response.text
            fields = {f["path"]: f for f in response.json()["fields"]}
            assert fields["orders[0].tradingsymbol"]["rule"] == "expired_instrument"
            assert fields["orders[0].tradingsymbol"]["message"] == (
                f"NFO:{expired} expired in {today - dt.timedelta(days=62):%b %Y}; current "
                f"NIFTY FUT contracts: {', '.join(i.tradingsymbol for i in current)}")
            assert fields["orders[1].quantity"]["message"] == (
                "quantity 50 is not a multiple of the lot size 75: use 75 (1 lot)")
            orders = await venue.get("/orders", headers=kite_headers())
            assert orders.json()["data"] == []  # nothing placed, nothing substituted
