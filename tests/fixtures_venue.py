"""Fixtures that start the paper venue on loopback, in the test's own nursery.

The venue under test has two accounts (`primary`, `secondary`), no rate limit, and a price
simulation that never steps on its own (`tick_interval_s` one hour): prices move only through
`POST /_venue/ltp` and `POST /_venue/step`, so every test is deterministic. What the venue must
match of Zerodha's reference responses is in `tests/fixtures/kite_schema.json`, derived from them
by `tests/fixtures/derive_kite_schema.py` (the references themselves stay outside the project).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection

from brokers.base import Instrument
from brokers.kite import parse_instrument
from brokers.paper import VenueAddress, VenueConfig, serve_venue
from brokers.paper.config import IST
from brokers.paper.instruments import InstrumentMaster, builtin_master
from brokers.ticker_reader import TickerReader, open_ticker_reader

TEST_CONFIG = VenueConfig(
    bind="127.0.0.1:0",
    accounts=("primary", "secondary"),
    rate_limit_per_s=None,
    tick_interval_s=3600.0,
)


async def start_venue(nursery: trio.Nursery, **overrides: object) -> VenueAddress:
    config = attrs.evolve(TEST_CONFIG, **overrides)
    address: VenueAddress = await nursery.start(serve_venue, config)
    return address


def kite_headers(account: str = "primary", token: str | None = None) -> dict[str, str]:
    return {
        "X-Kite-Version": "3",
        "Authorization": f"token paper:{token or f'paper-{account}'}",
    }


def kite_http(
    address: VenueAddress, account: str = "primary", token: str | None = None
) -> httpx.AsyncClient:
    """An httpx client for the venue's Kite REST API, authenticated as `account`."""
    return httpx.AsyncClient(
        base_url=address.rest_url, headers=kite_headers(account, token), timeout=10.0
    )


# ---- plain helpers ---------------------------------------------------------------------------

KITE_SCHEMA: dict[str, Any] = json.loads(
    (Path(__file__).parent / "fixtures" / "kite_schema.json").read_text()
)

_MASTER = builtin_master(dt.datetime.now(IST).date(), {})
_FUTURES = [i for i in _MASTER.instruments if i.instrument_type == "FUT"]
NIFTY_FUT = next(i.tradingsymbol for i in _FUTURES if i.name == "NIFTY")
BANKNIFTY_FUT = next(i.tradingsymbol for i in _FUTURES if i.name == "BANKNIFTY")
NIFTY_PRICE = 24000.0
NIFTY_CE = NIFTY_FUT.removesuffix("FUT") + "24000CE"


def kite_reference(name: str, *path: str) -> dict[str, Any]:
    """The derived shape of reference response `name` at `path` (keys; `[]` for list items)."""
    shape: dict[str, Any] = KITE_SCHEMA["responses"][name]
    for step in path:
        shape = shape["items"] if step == "[]" else shape["fields"][step]
    return shape


#: Our own rows (not the reference's) in Kite's instruments CSV format: equities on two
#: exchanges and one BANKNIFTY strike of January 2018 (lot 40).
_KITE_CSV_ROWS = (
    "779521,3045,SBIN,STATE BANK OF INDIA,0.0,,0.0,0.05,1,EQ,NSE,NSE",
    "408065,1594,INFY,INFOSYS,0.0,,0.0,0.05,1,EQ,NSE,NSE",
    "128028676,500112,SBIN,STATE BANK OF INDIA,0.0,,0.0,0.05,1,EQ,BSE,BSE",
    "12073986,47164,BANKNIFTY18JAN23500CE,,0.0,2018-01-25,23500.0,0.05,40,CE,NFO-OPT,NFO",
    "12074242,47165,BANKNIFTY18JAN23500PE,,0.0,2018-01-25,23500.0,0.05,40,PE,NFO-OPT,NFO",
)


def kite_instruments_csv() -> str:
    """An instruments dump with the reference's header and five rows of our own."""
    header = ",".join(KITE_SCHEMA["instruments_csv"]["header"])
    return "\n".join((header, *_KITE_CSV_ROWS)) + "\n"


def order_form(**overrides: Any) -> dict[str, Any]:
    """A valid NIFTY future LIMIT BUY far below the market (it rests OPEN)."""
    form: dict[str, Any] = {
        "variety": "regular", "exchange": "NFO", "tradingsymbol": NIFTY_FUT,
        "transaction_type": "BUY", "order_type": "LIMIT", "quantity": 75, "product": "NRML",
        "price": 20000, "validity": "DAY",
    }
    form.update(overrides)
    return {k: v for k, v in form.items() if v is not None}


def market_form(**overrides: Any) -> dict[str, Any]:
    return order_form(**{"order_type": "MARKET", "price": None, "market_protection": -1,
                         **overrides})


async def place(kite: httpx.AsyncClient, form: dict[str, Any]) -> str:
    response = await kite.post("/orders/regular", data=form)
    assert response.status_code == 200, response.text
    order_id: str = response.json()["data"]["order_id"]
    return order_id


async def history(kite: httpx.AsyncClient, order_id: str) -> list[dict[str, Any]]:
    response = await kite.get(f"/orders/{order_id}")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


async def latest(kite: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    return (await history(kite, order_id))[-1]


def assert_error(response: httpx.Response, status: int, error_type: str, text: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["status"] == "error"
    assert body["error_type"] == error_type
    assert body["data"] is None
    assert text.lower() in body["message"].lower(), body["message"]


async def next_text(ws: WebSocketConnection) -> dict[str, Any]:
    """The next JSON text frame, skipping heartbeats (bounded at 5 s)."""
    with trio.fail_after(5):
        while True:
            message = await ws.get_message()
            if isinstance(message, str):
                frame: dict[str, Any] = json.loads(message)
                return frame


async def next_order(ws: WebSocketConnection) -> dict[str, Any]:
    frame = await next_text(ws)
    assert frame["type"] == "order", frame
    data: dict[str, Any] = frame["data"]
    return data


def ticker_url(rest_or_ticker: str, account: str = "primary", token: str | None = None) -> str:
    return f"{rest_or_ticker}?api_key=paper&access_token={token or f'paper-{account}'}"


@attrs.define
class MasterBroker:
    """The venue's instrument master in-process, read the way `KiteBroker.instruments` reads
    its CSV: for tests on `autojump_clock`, which cannot wait on real sockets. Swap `master`
    to publish a new day's dump; `fetches` counts the loads."""

    master: InstrumentMaster
    fetches: int = 0

    async def instruments(self, exchange: str | None = None) -> list[Instrument]:
        self.fetches += 1
        await trio.lowlevel.checkpoint()
        rows = csv.DictReader(io.StringIO(self.master.to_csv(exchange)))
        return [parse_instrument(row) for row in rows]


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture
async def venue(nursery: trio.Nursery) -> VenueAddress:
    return await start_venue(nursery)


@pytest.fixture
async def kite(venue: VenueAddress) -> AsyncIterator[httpx.AsyncClient]:
    async with kite_http(venue) as client:
        yield client


@pytest.fixture
async def control(venue: VenueAddress) -> AsyncIterator[httpx.AsyncClient]:
    """A client for `/_venue/...` (no auth)."""
    async with httpx.AsyncClient(base_url=venue.rest_url, timeout=10.0) as client:
        yield client


async def nifty_symbols(venue: httpx.AsyncClient) -> tuple[str, str]:
    """The nearest NIFTY future and one NIFTY option from the venue's instrument master."""
    rows = list(csv.DictReader(io.StringIO((await venue.get("/instruments/NFO")).text)))
    fut = sorted(r["expiry"] + r["tradingsymbol"] for r in rows
                 if r["name"] == "NIFTY" and r["instrument_type"] == "FUT")[0][10:]
    opt = next(r["tradingsymbol"] for r in rows
               if r["name"] == "NIFTY" and r["instrument_type"] == "CE")
    return fut, opt


async def net_positions(venue: httpx.AsyncClient) -> dict[str, int]:
    headers = {"X-Kite-Version": "3", "Authorization": "token paper:paper-primary"}
    data = (await venue.get("/portfolio/positions", headers=headers)).json()["data"]
    return {p["tradingsymbol"]: p["quantity"] for p in data["net"] if p["quantity"]}


async def venue_orders(venue: httpx.AsyncClient) -> list[dict]:
    headers = {"X-Kite-Version": "3", "Authorization": "token paper:paper-primary"}
    return (await venue.get("/orders", headers=headers)).json()["data"]


@pytest.fixture(params=["own", "shared"])
async def reader(request: pytest.FixtureRequest) -> AsyncIterator[TickerReader | None]:
    """A ticker test twice: the consumer reads its socket itself, or the shared reader does."""
    if request.param == "own":
        yield None
        return
    async with open_ticker_reader() as shared:
        yield shared
