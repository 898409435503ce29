"""Margin at the edges, end to end (HTTP → coordinator → Kite adapter → paper venue) on an account
with 5 lakh of funds, asserting at the venue.

A NIFTY call spread (SELL 150 24000 CE, BUY 150 24500 CE) needs 5.4 lakh naked and 1.6 lakh
hedged: `hedge_first` gets the hedge benefit at the venue once its BUY leg has filled. A
`parallel` basket that fits only hedged (an iron condor: 10.8 lakh naked, 3.3 lakh hedged) runs
hedge-first by default, or is refused before anything is placed with `[batches]
unhedged_parallel = "refuse"`. An exit (BUY 150 against a short of 150 futures) needs no
margin: the pre-check asks with `consider_positions` and the venue honours it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.fixtures_orders import leg
from tests.fixtures_service import api, open_test_service, venue_control
from tests.fixtures_venue import NIFTY_CE, NIFTY_FUT, kite_headers

FUNDS = 500_000
NIFTY_24500_CE = NIFTY_FUT.removesuffix("FUT") + "24500CE"


SPREAD = [leg(NIFTY_CE, "SELL", 150), leg(NIFTY_24500_CE, "BUY", 150)]
NIFTY_STEM = NIFTY_FUT.removesuffix("FUT")
# BUY far OTM CE, SELL nearer CE, BUY far OTM PE, SELL nearer PE: every short has its hedge.
IRON_CONDOR = [leg(f"{NIFTY_STEM}24400CE", "BUY", 150), leg(f"{NIFTY_STEM}24200CE", "SELL", 150),
               leg(f"{NIFTY_STEM}23600PE", "BUY", 150), leg(f"{NIFTY_STEM}23800PE", "SELL", 150)]


async def positions(venue: httpx.AsyncClient) -> dict[str, int]:
    response = await venue.get("/portfolio/positions", headers=kite_headers())
    assert response.status_code == 200, response.text
    return {p["tradingsymbol"]: p["quantity"] for p in response.json()["data"]["net"]
            if p["quantity"]}


async def orders(venue: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await venue.get("/orders", headers=kite_headers())
    assert response.status_code == 200, response.text
    rows: list[dict[str, Any]] = response.json()["data"]
    return rows


async def test_hedge_first_spread_gets_the_hedge_benefit_at_the_venue(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with (open_test_service(tmp_path, venue_toml=f"funds = {FUNDS}") as running,
                    api(running) as http, venue_control(running) as venue):
            body = {"orders": SPREAD, "execution": "hedge_first"}
            response = await http.post("/accounts/primary/batch-orders", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "success", response.json()
            assert await positions(venue) == {NIFTY_CE: -150, NIFTY_24500_CE: 150}
            margins = (await venue.get("/user/margins", headers=kite_headers())).json()["data"]
            used = margins["equity"]["utilised"]["debits"]
            assert 0.3 * 0.15 * 150 * 24000 < used < 0.15 * 150 * 24000  # hedged, not naked


async def test_parallel_iron_condor_that_fits_only_hedged_runs_hedge_first(
    tmp_path: Path,
) -> None:
    """Funds between its hedged (final) and naked (initial) margin: no leg rejected by the
    venue's RMS, no rollback, and the result says it ran hedge-first."""
    with trio.fail_after(30):
        async with (open_test_service(tmp_path, venue_toml=f"funds = {FUNDS}") as running,
                    api(running) as http, venue_control(running) as venue):
            condor = [{**order, "variety": "regular"} for order in IRON_CONDOR]
            margin = await venue.post("/margins/basket", json=condor, headers=kite_headers(),
                                      params={"consider_positions": "true"})
            assert margin.status_code == 200, margin.text
            needs = margin.json()["data"]
            assert needs["final"]["total"] < FUNDS < needs["initial"]["total"]
            response = await http.post("/accounts/primary/batch-orders",
                                       json={"orders": IRON_CONDOR, "execution": "parallel"})
            assert response.status_code == 200, response.text
            result = response.json()
            assert result["status"] == "success", result
            assert result["execution"] == "hedge_first"
            assert "hedge" in result["execution_reason"]
            assert all(leg["rollback"] is None for leg in result["legs"]), result["legs"]
            placed = await orders(venue)
            assert sorted(o["status"] for o in placed) == ["COMPLETE"] * 4
            buys = [int(o["order_id"]) for o in placed if o["transaction_type"] == "BUY"]
            sells = [int(o["order_id"]) for o in placed if o["transaction_type"] == "SELL"]
            assert max(buys) < min(sells)  # no short reached the venue before its hedges
            assert await positions(venue) == {
                o["tradingsymbol"]: o["quantity"] * (1 if o["transaction_type"] == "BUY" else -1)
                for o in IRON_CONDOR}
            stored = await http.get(f"/accounts/primary/batch-orders/{result['batch_id']}")
            assert stored.json()["execution"] == "hedge_first"


async def test_parallel_spread_that_fits_only_hedged_is_refused_when_configured(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with (open_test_service(tmp_path, venue_toml=f"funds = {FUNDS}",
                                      batches_toml='unhedged_parallel = "refuse"') as running,
                    api(running) as http, venue_control(running) as venue):
            response = await http.post("/accounts/primary/batch-orders",
                                       json={"orders": SPREAD, "execution": "parallel"})
            assert response.status_code == 422, response.text
            fields = response.json()["fields"]
            assert [(f["path"], f["rule"]) for f in fields] == [("execution", "margin")]
            assert "hedge_first" in fields[0]["message"]
            assert await orders(venue) == []


@pytest.mark.parametrize("execution", ["parallel", "hedge_first"])
async def test_exit_basket_passes_when_margin_is_tight(tmp_path: Path, execution: str) -> None:
    """Short 150 futures use 4.3 of the 5 lakh; buying them back needs no margin."""
    with trio.fail_after(30):
        async with (open_test_service(tmp_path, venue_toml=f"funds = {FUNDS}") as running,
                    api(running) as http, venue_control(running) as venue):
            short = await http.post("/accounts/primary/orders", json=leg(NIFTY_FUT, "SELL", 150))
            assert short.status_code == 200, short.text
            assert await positions(venue) == {NIFTY_FUT: -150}
            body = {"orders": [leg(NIFTY_FUT, "BUY", 150)], "execution": execution}
            response = await http.post("/accounts/primary/batch-orders", json=body)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "success", response.json()
            assert await positions(venue) == {}


async def test_venue_basket_margins_consider_positions(tmp_path: Path) -> None:
    """Kite's `consider_positions`: an exit costs nothing, a hedge costs less than naked."""
    with trio.fail_after(30):
        async with (open_test_service(tmp_path, venue_toml=f"funds = {FUNDS}") as running,
                    api(running) as http, venue_control(running) as venue):
            bought = await http.post("/accounts/primary/orders",
                                     json=leg(NIFTY_24500_CE, "BUY", 150))
            assert bought.status_code == 200, bought.text
            sell = [{**leg(NIFTY_CE, "SELL", 150), "variety": "regular"}]
            exit_ = [{**leg(NIFTY_24500_CE, "SELL", 150), "variety": "regular"}]

            async def basket(body: list[dict[str, Any]], consider: str | None) -> dict[str, Any]:
                params = {} if consider is None else {"consider_positions": consider}
                response = await venue.post("/margins/basket", json=body, params=params,
                                            headers=kite_headers())
                assert response.status_code == 200, response.text
                data: dict[str, Any] = response.json()["data"]
                return data

            naked = 0.15 * 150 * 24000
            alone = await basket(sell, None)
            assert alone == await basket(sell, "false")
            assert alone["final"]["total"] == pytest.approx(naked, rel=0.05)
            hedged = await basket(sell, "true")
            assert hedged["final"]["total"] == pytest.approx(0.3 * naked, rel=0.05)
            assert (await basket(exit_, "true"))["final"]["total"] <= 0
            bad = await venue.post("/margins/basket", json=sell, headers=kite_headers(),
                                   params={"consider_positions": "maybe"})
            assert bad.status_code == 400 and "consider_positions" in bad.json()["message"]
