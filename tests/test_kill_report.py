"""The kill switch's report says no more than it knows, end to end over HTTP: the batches it
stopped are named with the final status each reached (whatever the store says yet; their legs say
"stopped by the kill switch"), a stopped batch whose fills the kill flattened says so, and
positions it cannot read afterwards are "unknown", with the reason, never an empty list."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from actors.batch import BatchConfig
from store import FINAL_BATCH_STATUSES
from supervision.service import Running
from tests.fixtures_service import api, expire_token, open_test_service, venue_control
from tests.fixtures_store import locked_tables
from tests.fixtures_venue import NIFTY_CE, NIFTY_FUT, kite_headers
from tests.fixtures_waits import wait_until

MARKET = {"tradingsymbol": NIFTY_FUT, "exchange": "NFO", "transaction_type": "BUY",
          "quantity": 75, "order_type": "MARKET", "product": "NRML"}
RESTING = {**MARKET, "order_type": "LIMIT", "price": 20000.0}  # far below the market: OPEN
NIFTY_PE = NIFTY_CE.removesuffix("CE") + "PE"
NIFTY_CE_OTM = NIFTY_CE.replace("24000", "24500")


async def wait_venue_orders(
    venue: httpx.AsyncClient, done: Callable[[list[dict[str, Any]]], bool]
) -> None:
    """Until the venue's order listing satisfies `done` (bounded by the caller)."""
    async def listed() -> bool:
        return done((await venue.get("/orders", headers=kite_headers())).json()["data"])

    await wait_until(listed, "the venue's orders", math.inf, poll_s=0.02)


async def wait_open_limit(venue: httpx.AsyncClient) -> None:
    """Until the batch's LIMIT leg rests OPEN at the venue (bounded by the caller)."""
    await wait_venue_orders(venue, lambda listing: any(
        o["order_type"] == "LIMIT" and o["status"] == "OPEN" for o in listing))


async def test_kill_names_the_batches_it_stopped_and_their_legs_say_so(
    service: Running, nursery: trio.Nursery
) -> None:
    results: list[httpx.Response] = []
    submitted = trio.Event()
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:

            async def submit() -> None:
                body = {"orders": [MARKET, RESTING], "timeout_s": 30}
                results.append(await http.post("/accounts/primary/batch-orders", json=body))
                submitted.set()

            nursery.start_soon(submit)
            await wait_open_limit(venue)
            kill = await http.post("/accounts/primary/kill")
            assert kill.status_code == 200, kill.text
            await submitted.wait()
    report: dict[str, Any] = kill.json()
    result: dict[str, Any] = results[0].json()
    assert result["status"] == "rolled_back", result
    assert report["stopped_batches"] == [{"batch_id": result["batch_id"],
                                          "status": "rolled_back", "flattened": []}], report
    assert result["legs"][1]["error"] == "stopped by the kill switch", result["legs"]
    assert report["status"] == "done" and report["remaining"] == [], report


async def test_kill_says_remaining_unknown_when_positions_cannot_be_read(
    service: Running,
) -> None:
    with trio.fail_after(30):
        async with api(service) as http:
            placed = await http.post("/accounts/primary/orders", json=MARKET)
            assert placed.status_code == 200, placed.text
            await expire_token(service)
            kill = await http.post("/accounts/primary/kill")
    assert kill.status_code == 200, kill.text
    report: dict[str, Any] = kill.json()
    assert report["status"] == "incomplete", report
    assert report["remaining"] == "unknown", report
    assert "TokenException" in report["remaining_reason"] or "token" in (
        report["remaining_reason"].lower()), report
    assert report["stopped_batches"] == []


async def test_kill_reports_the_status_each_stopped_batch_reached_though_the_store_lags(
    tmp_path: Path, aio_loop: Any, pg_url: str
) -> None:
    """Four batches whose fills the venue holds; the store lags (another connection holds
    `batches` in EXCLUSIVE mode: its rows can be read, not written) when the kill stops them.
    The report must give each the status it reached, not the stale `running` of the store:
    the same status its GET answers afterwards."""
    answers: list[dict[str, Any]] = []
    with trio.fail_after(60):
        async with (
            open_test_service(tmp_path, database=pg_url,
                              database_toml="store_timeout_s = 0.5") as running,
            api(running) as http, venue_control(running) as venue,
        ):
            held = await venue.post("/_venue/faults", json={"fill_delay_ms": 60_000})
            assert held.status_code == 200, held.text

            async def submit(symbol: str) -> None:
                body = {"orders": [{**MARKET, "tradingsymbol": symbol},
                                   {**MARKET, "tradingsymbol": symbol,
                                    "transaction_type": "SELL"}], "timeout_s": 30}
                response = await http.post("/accounts/primary/batch-orders", json=body)
                assert response.status_code == 200, response.text
                answers.append(response.json())

            async with trio.open_nursery() as batches:
                for symbol in (NIFTY_FUT, NIFTY_CE, NIFTY_PE, NIFTY_CE_OTM):
                    batches.start_soon(submit, symbol)
                await wait_venue_orders(venue, lambda listing: sum(  # each leg held OPEN
                    o["status"] == "OPEN" for o in listing) == 8)
                async with locked_tables(pg_url, "batches", mode="EXCLUSIVE"):
                    kill = await http.post("/accounts/primary/kill")
            assert kill.status_code == 200, kill.text
            report: dict[str, Any] = kill.json()
            stored = {}
            for entry in report["stopped_batches"]:
                got = await http.get(f"/accounts/primary/batch-orders/{entry['batch_id']}")
                stored[entry["batch_id"]] = got.json()["status"]
    reported = {entry["batch_id"]: entry["status"] for entry in report["stopped_batches"]}
    assert reported == {answer["batch_id"]: answer["status"] for answer in answers}, report
    assert reported == stored, (reported, stored)
    assert set(reported.values()) == {"rolled_back"}, reported
    assert set(reported.values()) <= FINAL_BATCH_STATUSES
    assert report["status"] == "done", report


#: Legs follow their orders by pushes; the next poll of a silent one is a minute away.
SLOW_POLL = attrs.evolve(BatchConfig(), session=None, poll_interval_s=60.0)


async def test_a_stopped_batch_that_filled_succeeds_and_the_report_names_its_flattening(
    tmp_path: Path,
) -> None:
    """The batch's leg filled at the venue, but its push was lost (a stalled ticker, not yet
    taken for dead): the batch has not seen the fill when the kill stops it. It concludes
    `success` (the broker says COMPLETE), and the kill then flattens the position: the report
    names the batch under `flattened` and the position under the batch's entry; the batch
    itself stays `success` (it did fill)."""
    results: list[dict[str, Any]] = []
    with trio.fail_after(30):
        async with (
            open_test_service(tmp_path, batch_config=SLOW_POLL,
                              extra_toml="[ticker]\nstall_timeout_s = 60") as running,
            api(running) as http, venue_control(running) as venue,
        ):
            lost = await venue.post("/_venue/faults", json={"stall_ticker": True})
            assert lost.status_code == 200, lost.text
            async with trio.open_nursery() as nursery:

                async def submit() -> None:
                    body = {"orders": [MARKET], "timeout_s": 30}
                    response = await http.post("/accounts/primary/batch-orders", json=body)
                    results.append(response.json())

                nursery.start_soon(submit)
                await wait_venue_orders(venue, lambda listing: any(
                    o["status"] == "COMPLETE" for o in listing))
                assert (await venue.delete("/_venue/faults")).status_code == 200
                kill = await http.post("/accounts/primary/kill")
            assert kill.status_code == 200, kill.text
            [result] = results
            got = await http.get(f"/accounts/primary/batch-orders/{result['batch_id']}")
    report: dict[str, Any] = kill.json()
    batch_id = result["batch_id"]
    assert result["status"] == "success" and got.json()["status"] == "success", result
    assert report["stopped_batches"] == [{
        "batch_id": batch_id, "status": "success",
        "flattened": [{"exchange": "NFO", "tradingsymbol": NIFTY_FUT}]}], report
    [flattened] = report["flattened"]
    assert flattened["tradingsymbol"] == NIFTY_FUT and flattened["quantity"] == 75, flattened
    assert flattened["batches"] == [batch_id], flattened
    assert report["status"] == "done" and report["remaining"] == [], report
