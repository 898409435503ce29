"""The venue never forgets what it reported: `orderdesk venue --state FILE` killed with SIGKILL
right after a ticker push or a REST answer comes back from the same file with that state.

The venue is the real console script in a subprocess; each round kills it the instant the client
has the report in hand (no grace for a background write), restarts it and reads the order and the
position back. Rounds are bounded in count; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import open_websocket_url

from brokers.paper import VenueAddress
from tests.fixtures_cli import free_port, running_orderdesk
from tests.fixtures_venue import (
    NIFTY_FUT,
    kite_http,
    latest,
    market_form,
    next_order,
    order_form,
    place,
    ticker_url,
)

ROUNDS = 3
LOT = 75


@asynccontextmanager
async def venue_process(tmp_path: Path, state: Path) -> AsyncIterator[tuple[trio.Process,
                                                                            VenueAddress]]:
    """`orderdesk venue --state FILE` on a free port, until the block ends (or it is killed)."""
    port = free_port()
    async with running_orderdesk(tmp_path, "venue", "--bind", f"127.0.0.1:{port}",
                                 "--state", str(state), ready="orderdesk venue:") as process:
        yield process, VenueAddress("127.0.0.1", port)


async def kill9(process: trio.Process) -> None:
    process.kill()
    await process.wait()


async def net_position(kite: httpx.AsyncClient) -> int:
    response = await kite.get("/portfolio/positions")
    assert response.status_code == 200, response.text
    net = [p["quantity"] for p in response.json()["data"]["net"]
           if p["tradingsymbol"] == NIFTY_FUT]
    return sum(net)


async def fill_pushed_then_killed(tmp_path: Path, state: Path) -> dict[str, Any]:
    """A MARKET order; SIGKILL the moment its COMPLETE frame reaches a ticker client."""
    async with venue_process(tmp_path, state) as (process, address):
        async with (kite_http(address) as kite,
                    open_websocket_url(ticker_url(address.ticker_url)) as ws):
            order_id = await place(kite, market_form())
            while (frame := await next_order(ws))["status"] != "COMPLETE":
                pass
            await kill9(process)
    assert frame["order_id"] == order_id
    return frame


async def answers_then_killed(tmp_path: Path, state: Path) -> tuple[str, str]:
    """A resting LIMIT placed, then cancelled; SIGKILL the moment the cancel is answered.
    Returns the ids of the cancelled order and of one placed (answered) just before the kill."""
    async with venue_process(tmp_path, state) as (process, address):
        async with kite_http(address) as kite:
            cancelled = await place(kite, order_form())
            response = await kite.delete(f"/orders/regular/{cancelled}")
            assert response.status_code == 200, response.text
            placed = await place(kite, order_form(price=20100))
            await kill9(process)
    return cancelled, placed


async def test_what_the_venue_reported_survives_sigkill(tmp_path: Path) -> None:
    state = tmp_path / "venue.json"
    with trio.fail_after(30 + 30 * ROUNDS):
        for round_ in range(1, ROUNDS + 1):
            pushed = await fill_pushed_then_killed(tmp_path, state)
            cancelled, placed = await answers_then_killed(tmp_path, state)
            async with venue_process(tmp_path, state) as (_, address):
                async with kite_http(address) as kite:
                    filled = await latest(kite, pushed["order_id"])
                    assert (filled["status"], filled["filled_quantity"]) == (
                        "COMPLETE", pushed["filled_quantity"]), (round_, filled)
                    assert await net_position(kite) == LOT * round_, round_
                    assert (await latest(kite, cancelled))["status"] == "CANCELLED", round_
                    assert (await latest(kite, placed))["status"] == "OPEN", round_
                    # Leave no resting order behind: the next round's position is one lot more.
                    response = await kite.delete(f"/orders/regular/{placed}")
                    assert response.status_code == 200, response.text
