"""The kill switch's report says no more than it knows, end to end over HTTP: the batches it
stopped are named (and their legs say "stopped by the kill switch"), and positions it cannot read
afterwards are "unknown", with the reason, never an empty list."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from supervision.service import Running
from tests.fixtures_service import api, venue_control
from tests.fixtures_venue import NIFTY_FUT, kite_headers
from tests.fixtures_web import wait_upstream

MARKET = {"tradingsymbol": NIFTY_FUT, "exchange": "NFO", "transaction_type": "BUY",
          "quantity": 75, "order_type": "MARKET", "product": "NRML"}
RESTING = {**MARKET, "order_type": "LIMIT", "price": 20000.0}  # far below the market: OPEN


async def wait_open_limit(venue: httpx.AsyncClient) -> None:
    """Until the batch's LIMIT leg rests OPEN at the venue (bounded by the caller)."""
    while True:
        listing = (await venue.get("/orders", headers=kite_headers())).json()["data"]
        if any(o["order_type"] == "LIMIT" and o["status"] == "OPEN" for o in listing):
            return
        await trio.sleep(0.02)


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
                                          "status": "rolled_back"}], report
    assert result["legs"][1]["error"] == "stopped by the kill switch", result["legs"]
    assert report["status"] == "done" and report["remaining"] == [], report


async def test_kill_says_remaining_unknown_when_positions_cannot_be_read(
    service: Running,
) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            placed = await http.post("/accounts/primary/orders", json=MARKET)
            assert placed.status_code == 200, placed.text
            expired = await venue.post("/_venue/accounts/primary/expire")
            assert expired.status_code == 200, expired.text
            await wait_upstream(service.actors["primary"], "auth_expired")
            kill = await http.post("/accounts/primary/kill")
    assert kill.status_code == 200, kill.text
    report: dict[str, Any] = kill.json()
    assert report["status"] == "incomplete", report
    assert report["remaining"] == "unknown", report
    assert "TokenException" in report["remaining_reason"] or "token" in (
        report["remaining_reason"].lower()), report
    assert report["stopped_batches"] == []
