"""A ticker that loses pushes with its socket kept open, and stalls for 4 s: end to end.

Kite never replays a lost push, and a socket whose heartbeats keep coming gives no sign of one.
The venue drops 30 % of the account's order frames (`drop_order_frames_ratio`) and then stalls
its ticker for 4 s (under the 5 s stall limit). With the production defaults (`[ticker]` not
set) every order in the gateway's book matches the venue within 30 s, found by the periodic
reconcile, with no reconnect, and the websocket's seq has no gap.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import httpx
import trio
import trio_websocket

from tests.fixtures_service import TOKENS, api, open_test_service, venue_control
from tests.fixtures_venue import NIFTY_FUT, kite_headers
from tests.fixtures_waits import wait_until
from tests.fixtures_web import Reader

STALL_S = 4.0
MATCH_WITHIN_S = 30.0


def order(side: str, order_type: str = "MARKET", price: float | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"tradingsymbol": NIFTY_FUT, "exchange": "NFO",
                            "transaction_type": side, "quantity": 75,
                            "order_type": order_type, "product": "NRML"}
    if price is not None:
        body["price"] = price
    return body


def states(orders: list[dict[str, Any]]) -> dict[str, tuple[str, int]]:
    return {str(o["order_id"]): (o["status"], int(o["filled_quantity"])) for o in orders}


async def venue_states(venue: httpx.AsyncClient) -> dict[str, tuple[str, int]]:
    response = await venue.get("/orders", headers=kite_headers())
    assert response.status_code == 200, response.text
    return states(response.json()["data"])


async def place(http: httpx.AsyncClient, body: dict[str, Any]) -> str:
    response = await http.post("/accounts/primary/orders", json=body)
    assert response.status_code == 200, response.text
    order_id: str = response.json()["order_id"]
    return order_id


async def pushed(http: httpx.AsyncClient, reader: Reader) -> str:
    """Place MARKET orders until the ticker's push of one reaches the websocket (the venue
    loses some): the id of that one."""
    while True:
        order_id = await place(http, order("SELL"))
        with trio.move_on_after(1.0):
            await reader.until(partial(_pushed, order_id))
            return order_id


def _pushed(order_id: str, message: dict[str, Any]) -> bool:
    return (message["type"] == "order" and message.get("source") == "ticker"
            and message["order"]["order_id"] == order_id)


async def test_lost_pushes_and_a_short_stall_are_found_without_a_reconnect(
    tmp_path: Path,
) -> None:
    url = f"ws://{{}}/ws/orders/primary?access_token={TOKENS['primary']}"
    with trio.fail_after(MATCH_WITHIN_S + 30):
        async with (open_test_service(tmp_path) as running, api(running) as http,
                    venue_control(running) as venue,
                    trio_websocket.open_websocket_url(url.format(running.web_bind)) as ws):
            actor = running.actors["primary"]
            reader = Reader(ws)
            snapshot = await reader.until(lambda m: m["type"] == "snapshot")
            await reader.until(lambda m: m["type"] == "status" and m["upstream"] == "connected")
            faults = await venue.post("/_venue/faults", json={"drop_order_frames_ratio": 0.3})
            assert faults.status_code == 200, faults.text

            resting = [await place(http, order("BUY", "LIMIT", 20000.0)) for _ in range(4)]
            for n in range(8):
                await place(http, order("BUY" if n % 2 else "SELL"))
            for order_id in resting[:2]:
                cancelled = await http.delete(f"/accounts/primary/orders/{order_id}")
                assert cancelled.status_code == 200, cancelled.text

            # The stall begins just after a push reached the gateway: 4 s of silence.
            last = await pushed(http, reader)
            stall_began = trio.current_time()
            stalled = await venue.post("/_venue/faults", json={"stall_ticker": True})
            assert stalled.status_code == 200, stalled.text
            lost_in_stall = [await place(http, order("BUY")), await place(http, order("SELL"))]
            await trio.sleep_until(stall_began + STALL_S)
            cleared = await venue.post("/_venue/faults", json={"stall_ticker": False})
            assert cleared.status_code == 200, cleared.text
            cleared_at = trio.current_time()

            expected = await venue_states(venue)
            assert {*resting, last, *lost_in_stall} <= set(expected)
            async def matched() -> bool:  # the venue's side is behind a socket: polled
                nonlocal expected
                if states(actor.orders()) == expected:
                    return True
                expected = await venue_states(venue)
                return False

            await wait_until(matched, "the book matches the venue", MATCH_WITHIN_S, poll_s=0.2)
            took = trio.current_time() - cleared_at

            assert actor.upstream.reconnects == 0, actor.upstream
            assert actor.upstream.state == "connected"
            seen = await reader.orders_until_seq(actor.seq)
            seqs = [m["seq"] for m in reader.messages if m["type"] == "order"]
            assert seqs == list(range(snapshot["seq"] + 1, actor.seq + 1)), seqs
            assert any(m.get("source") == "reconcile" for m in seen)
            statuses = [m["upstream"] for m in reader.messages if m["type"] == "status"]
            assert statuses == ["connected"], statuses
            print(f"book matched the venue {took:.1f} s after the stall ended")
