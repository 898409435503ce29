"""A same-day restart with the store kept (the default set-up) never confuses new orders with
stored ones (issue 10, item 4), through the whole service: `open_service` twice on one SQLite file,
its embedded paper venue restarted with it.

The first run leaves two COMPLETE BANKNIFTY SELLs in the store. The second run's batch (a MARKET
leg and a LIMIT leg far below the market, 2 s) must roll back cleanly: the MARKET leg's 75 NIFTY
sold back, the LIMIT leg cancelled, nothing working at the venue, and no order id of the first run
reused by the venue.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import httpx
import trio

from actors.batch import BatchConfig
from supervision.service import Running
from tests.fixtures_desk import connected
from tests.fixtures_orders import leg
from tests.fixtures_service import api, open_test_service, venue_control
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_FUT, kite_headers
from tests.fixtures_waits import wait_until

BATCHES = BatchConfig(session=None, poll_interval_s=0.2, rollback_timeout_s=10.0)


async def venue_get(running: Running, path: str) -> Any:
    async with venue_control(running) as venue:
        response = await venue.get(path, headers=kite_headers())
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def book_statuses(http: httpx.AsyncClient) -> dict[str, str]:
    response = await http.get("/accounts/primary/orders")
    assert response.status_code == 200, response.text
    body = response.json()
    orders = body["orders"] if isinstance(body, dict) else body
    return {o["order_id"]: o["status"] for o in orders}


async def test_a_batch_after_a_same_day_restart_rolls_back_cleanly(tmp_path: Path) -> None:
    with trio.fail_after(60):
        async with open_test_service(tmp_path, batch_config=BATCHES) as running:
            await connected(running.actors["primary"])
            async with api(running) as http:
                first_ids = []
                for _ in range(2):
                    response = await http.post("/accounts/primary/orders",
                                               json=leg(BANKNIFTY_FUT, "SELL", 35))
                    assert response.status_code == 200, response.text
                    first_ids.append(response.json()["order_id"])
                async def both_complete() -> bool:  # in the store, before the restart
                    statuses = await book_statuses(http)
                    return all(statuses.get(i) == "COMPLETE" for i in first_ids)

                await wait_until(both_complete, "both orders COMPLETE", math.inf, poll_s=0.02)

        async with open_test_service(tmp_path, batch_config=BATCHES) as running:
            await connected(running.actors["primary"])
            async with api(running) as http:
                body = {"orders": [leg(NIFTY_FUT, "BUY", 75),
                                   leg(NIFTY_FUT, "BUY", 75, order_type="LIMIT", price=20000.0)],
                        "rollback_on_failure": True, "timeout_s": 2}
                response = await http.post("/accounts/primary/batch-orders", json=body)
                assert response.status_code == 200, response.text
                result = response.json()
                stored = await book_statuses(http)
            venue_orders = await venue_get(running, "/orders")
            positions = await venue_get(running, "/portfolio/positions")

    assert result["status"] == "rolled_back", result
    market, limit = result["legs"]
    assert (market["status"], market["filled_quantity"]) == ("COMPLETE", 75), market
    assert market["rollback"]["action"] == "flattened", market
    assert limit["status"] == "CANCELLED" and limit["rollback"]["action"] == "cancelled", limit
    assert not set(first_ids) & {o["order_id"] for o in venue_orders}, "an order id was reused"
    assert {o["tradingsymbol"] for o in venue_orders} == {NIFTY_FUT}, venue_orders
    assert not [o for o in venue_orders if o["status"] in ("OPEN", "TRIGGER PENDING")]
    net = {p["tradingsymbol"]: p["quantity"] for p in positions["net"]}
    assert net.get(NIFTY_FUT, 0) == 0, net
    # The gateway's book agrees with the venue: the stored SELLs untouched, the new orders final.
    assert all(stored[i] == "COMPLETE" for i in first_ids), stored
    assert all(stored[o["order_id"]] == o["status"] for o in venue_orders), (stored, venue_orders)
