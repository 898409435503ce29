"""Unwinds where MARKET is refused or rests (Kite on stock options and contracts with no trades).

The venue's faults play Kite's refusals: `reject_market_symbols` (MARKET refused, "Try placing a
LIMIT order"), `rest_protected_market` (a protected MARKET rests at its band edge),
`cancel_refused_ms` (a cancel "being processed") and `price_band_pct` (a LIMIT beyond the band
refused). Outcomes are asserted at the venue: its positions, its orders and their histories
(every `MODIFIED` row is one modification the venue applied).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from actors.batch import BatchConfig
from tests.fixtures_desk import FAST, Desk, open_desk, place
from tests.fixtures_orders import leg
from tests.fixtures_service import api, open_test_service, venue_control
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, NIFTY_FUT, kite_http, market_form
from tests.fixtures_web import replied

THIN = {"reject_market_symbols": [NIFTY_CE], "rest_protected_market": True,
        "cancel_refused_ms": 600, "price_band_pct": 5}


async def last_price(kite: httpx.AsyncClient, symbol: str) -> float:
    response = await kite.get("/quote/ltp", params={"i": f"NFO:{symbol}"})
    assert response.status_code == 200, response.text
    return float(response.json()["data"][f"NFO:{symbol}"]["last_price"])


async def marketable_buy(kite: httpx.AsyncClient, symbol: str, quantity: int) -> dict[str, Any]:
    """A LIMIT BUY 1% above the LTP (on the 0.05 tick): fills at once, inside a 5% band."""
    price = round(round(await last_price(kite, symbol) * 1.01 / 0.05) * 0.05, 2)
    return leg(symbol, quantity=quantity, order_type="LIMIT", price=price)


async def venue_orders(kite: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await kite.get("/orders")
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


async def modifications(kite: httpx.AsyncClient, order_id: str) -> int:
    response = await kite.get(f"/orders/{order_id}")
    assert response.status_code == 200, response.text
    return sum(1 for row in response.json()["data"] if row["status"] == "MODIFIED")


def reverses(orders: list[dict[str, Any]], symbol: str) -> list[dict[str, Any]]:
    return [o for o in orders if o["tradingsymbol"] == symbol and (o["tag"] or "")[-2] == "R"]


async def test_a_rollback_on_thin_contracts_is_rolled_back_through_the_api(
    tmp_path: Path,
) -> None:
    """The issue's scenario through `orderdesk serve`'s HTTP API, default limits: every thin-
    contract fault on, a hedge_first batch buys an option (MARKET refused on it) and a future
    (its protected MARKET rests), then its short is rejected. The option's reverse goes out as
    a LIMIT, the future's resting reverse is re-priced by modify; both fill: rolled_back."""
    async with (open_test_service(tmp_path) as running, api(running) as http,
                venue_control(running) as control):
        assert running.venue is not None
        async with kite_http(running.venue) as kite:
            with trio.fail_after(30):
                faults = await control.post("/_venue/faults", json={
                    **THIN, "reject_symbols": [BANKNIFTY_FUT]})
                assert faults.status_code == 200, faults.text
                body = {"orders": [await marketable_buy(kite, NIFTY_CE, 75),
                                   await marketable_buy(kite, NIFTY_FUT, 75),
                                   leg(BANKNIFTY_FUT, "SELL", 35)],
                        "execution": "hedge_first", "rollback_on_failure": True}
                response = await http.post("/accounts/primary/batch-orders", json=body)
                assert response.status_code == 200, response.text
                result = response.json()
                positions = (await kite.get("/portfolio/positions")).json()["data"]["net"]
                orders = await venue_orders(kite)
                [option_reverse] = reverses(orders, NIFTY_CE)
                [future_reverse] = reverses(orders, NIFTY_FUT)
                future_modified = await modifications(kite, future_reverse["order_id"])
    assert result["status"] == "rolled_back", result
    assert {p["tradingsymbol"]: p["quantity"] for p in positions if p["quantity"]} == {}
    option, future, short = result["legs"]
    assert (option["rollback"]["action"], future["rollback"]["action"]) == ("flattened",) * 2
    assert short["status"] == "REJECTED" and short["rollback"]["action"] == "none"
    # MARKET refused at the POST (no order at the venue): the option's reverse is a LIMIT
    assert option_reverse["order_type"] == "LIMIT" and option_reverse["status"] == "COMPLETE"
    assert option_reverse["tag"].endswith("R1")
    # the future's protected MARKET rested at its band edge; modified into a marketable LIMIT
    assert future_reverse["status"] == "COMPLETE" and future_reverse["order_type"] == "LIMIT"
    assert 1 <= future_modified <= BatchConfig().modify_limit_per_order
    assert future["rollback"]["modifications"] == future_modified


async def test_a_cancel_refused_while_being_processed_is_retried(desk: Desk) -> None:
    """At the batch's deadline its resting leg is cancelled while the venue still refuses
    cancels ("being processed"); the cancel is asked again until it goes through."""
    await desk.faults(cancel_refused_ms=1500)
    body = {"orders": [leg(), leg(order_type="LIMIT", price=20000.0)], "timeout_s": 1}
    with trio.fail_after(20):
        status, result = await desk.submit(body)
        orders = await desk.orders()
    assert status == 200 and result["status"] == "rolled_back", result
    resting = result["legs"][1]
    assert resting["status"] == "CANCELLED" and resting["rollback"]["action"] == "cancelled"
    assert {o["order_id"]: o["status"] for o in orders}[resting["order_id"]] == "CANCELLED"
    assert await desk.positions() == {}


async def test_re_pricing_stops_at_the_per_order_modification_limit(
    venue: Any, sqlite_url: str
) -> None:
    """A reverse that keeps resting is re-priced every interval, never more often than the cap:
    the protected MARKET rests at its band edge, each marketable LIMIT waits 1.5 s to fill (the
    batch's own LIMIT leg too, before its short is rejected)."""
    config = attrs.evolve(FAST, reprice_interval_s=0.1, modify_limit_per_order=3)
    async with open_desk(venue, sqlite_url, config) as desk:
        with trio.fail_after(20):
            body = {"orders": [await marketable_buy(desk.kite, NIFTY_FUT, 75),
                               leg(BANKNIFTY_FUT, "SELL", 35)], "execution": "hedge_first"}
            await desk.faults(reject_symbols=[BANKNIFTY_FUT], rest_protected_market=True,
                              fill_delay_ms=1500)
            status, result = await desk.submit(body)
            [reverse] = reverses(await desk.orders(), NIFTY_FUT)
            modified = await modifications(desk.kite, reverse["order_id"])
        assert status == 200 and result["status"] == "rolled_back", result
        assert modified == 3 and result["legs"][0]["rollback"]["modifications"] == 3
        assert reverse["order_type"] == "LIMIT" and reverse["status"] == "COMPLETE"
        assert await desk.positions() == {}


async def test_the_kill_switch_flattens_a_thin_position_in_limit_slices(desk: Desk) -> None:
    """3,600 of an option where MARKET is refused: the kill switch's flatten (the rollback's
    unwind) sends LIMIT orders of at most the freeze quantity (1,800) until it is flat."""
    with trio.fail_after(20):
        for _ in range(2):
            price = round(round(await last_price(desk.kite, NIFTY_CE) * 1.01 / 0.05) * 0.05, 2)
            await place(desk, market_form(tradingsymbol=NIFTY_CE, quantity=1800,
                                          order_type="LIMIT", price=price,
                                          market_protection=None))
        assert await desk.positions() == {NIFTY_CE: 3600}
        await desk.faults(**THIN)
        status, report = await replied(desk.coordinator.kill("primary", "test"))
        assert await desk.positions() == {}
    assert status == 200 and report["status"] == "done", report
    [flattened] = report["flattened"]
    assert [(o["order_type"], o["status"], o["filled_quantity"]) for o in flattened["orders"]] == [
        ("MARKET", "REJECTED", 0), ("LIMIT", "COMPLETE", 1800), ("LIMIT", "COMPLETE", 1800)]
    assert "Try placing a LIMIT order" in flattened["orders"][0]["error"]
