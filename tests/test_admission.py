"""Admission control (issue 11): overload costs throughput, never safety.

A batch that cannot start within its deadline — its account has too many batches in flight, or
the orders queued ahead at the account's order-rate budget would outlast its `timeout_s` — is
refused with 503 `overloaded` and `Retry-After` before anything is written or placed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import attrs
import trio

from actors.batch import BatchConfig
from brokers.paper import VenueAddress
from tests.fixtures_desk import FAST, FAST_ACTOR, Desk, open_desk
from tests.fixtures_orders import leg
from tests.fixtures_service import api, open_test_service, scrape_metrics, venue_control
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, start_venue
from tests.fixtures_waits import wait_until

KITE = {"X-Kite-Version": "3", "Authorization": "token paper:paper-primary"}


async def _resting(desk: Desk) -> None:
    """Until the first batch's LIMIT leg rests OPEN at the venue."""
    async def resting() -> bool:
        return any(o["status"] == "OPEN" for o in await desk.orders())

    await wait_until(resting, "a LIMIT leg OPEN", math.inf, poll_s=0.02)


async def test_a_batch_beyond_the_accounts_bound_is_refused_with_nothing_placed(
    nursery: trio.Nursery, sqlite_url: str
) -> None:
    venue: VenueAddress = await start_venue(nursery)
    config = attrs.evolve(FAST, max_batches_per_account=1)
    done = trio.Event()
    first: list[tuple[int, dict[str, Any]]] = []
    with trio.fail_after(20):
        async with open_desk(venue, sqlite_url, config) as desk:

            async def resting_batch() -> None:
                body = {"orders": [leg(order_type="LIMIT", price=20000.0)], "timeout_s": 2}
                first.append(await desk.submit(body))
                done.set()

            desk.nursery.start_soon(resting_batch)
            await _resting(desk)
            status, body = await desk.submit({"orders": [leg(BANKNIFTY_FUT, quantity=35)]},
                                             key="second")
            assert status == 503 and body["error"] == "overloaded", body
            assert body["reason"] == "batches_in_flight" and body["retry_after_s"] >= 1
            assert len(await desk.orders()) == 1  # the refused batch placed nothing
            assert await desk.store.find_batch("primary", "second") is None  # nor stored it
            await done.wait()
            assert first[0][1]["status"] == "rolled_back"
            # Once the first is finished the account takes batches again.
            status, body = await desk.submit({"orders": [leg(BANKNIFTY_FUT, quantity=35)]})
            assert status == 200 and body["status"] == "success", body


async def test_a_batch_the_order_rate_cannot_send_in_time_is_503_with_retry_after(
    tmp_path: Path,
) -> None:
    # 1 order a second: the 4 legs need 3 s beyond the first, the batch allows 2.
    config = BatchConfig(session=None, rate_per_s=1.0)
    body = {"orders": [leg(), leg(BANKNIFTY_FUT, "SELL", 35), leg(NIFTY_CE, quantity=150),
                       leg(NIFTY_CE, "SELL", 75)], "timeout_s": 2}
    with trio.fail_after(30):
        async with (
            open_test_service(tmp_path, actor_config=FAST_ACTOR, batch_config=config) as running,
            api(running) as http,
            venue_control(running) as venue,
        ):
            response = await http.post("/accounts/primary/batch-orders", json=body,
                                       headers={"Idempotency-Key": "too-fast"})
            assert response.status_code == 503, response.text
            refused = response.json()
            assert refused["error"] == "overloaded" and refused["reason"] == "order_rate"
            assert "timeout_s" in refused["message"] and refused["correlation_id"]
            assert int(response.headers["Retry-After"]) == refused["retry_after_s"] >= 1
            orders = await venue.get("/orders", headers=KITE)
            assert orders.status_code == 200 and orders.json()["data"] == [], orders.text
            assert 'batches_refused_total{reason="order_rate"} 1.0' in await scrape_metrics(
                running)
            # The same batch with room for its legs is taken.
            response = await http.post("/accounts/primary/batch-orders",
                                       json={**body, "timeout_s": 10})
            assert response.status_code == 200 and response.json()["status"] == "success"
            assert "store_write_duration_seconds_count" in await scrape_metrics(running)
