"""Reads are budgeted too (issue 12, item 2), and the venue's limits answer as Kite does.

Kite allows about 10 GETs a second per user. The gateway reads through a per-account read
limiter, every lookup that needs `GET /orders` shares the one in flight, and a reconcile
refused with 429 is retried without closing the ticker. The venue refuses reads, order writes
per minute and per day, and modifications of one order beyond their limits with Kite's 429;
its `fill_delay_ms` fault holds a MARKET fill, so delayed-fill tests mean what they say.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import trio

from brokers._shared import SharedCall
from brokers.base import BrokerError, RateLimited
from tests.fixtures_service import api, open_test_service, venue_control
from tests.fixtures_venue import (
    NIFTY_FUT,
    kite_http,
    latest,
    market_form,
    order_form,
    place,
    start_venue,
)
from tests.fixtures_waits import wait_until
from tests.fixtures_web import wait_upstream


async def _refused(control: Any) -> dict[str, int]:
    response = await control.get("/_venue/limits")
    refused: dict[str, int] = response.json()["data"]["refused"]
    return refused


async def test_a_delayed_batch_stays_within_the_read_budget(tmp_path: Path) -> None:
    """10 legs whose fills are held 5 s: no read 429, no ticker reconnect, success."""
    with trio.fail_after(40):
        async with open_test_service(
            tmp_path, venue_toml="read_limit_per_s = 10", limits_toml="reads_per_s = 10",
        ) as running, api(running) as http, venue_control(running) as venue:
            await venue.post("/_venue/faults", json={"fill_delay_ms": 5000})
            leg = {"tradingsymbol": NIFTY_FUT, "exchange": "NFO", "transaction_type": "BUY",
                   "quantity": 75, "order_type": "MARKET", "product": "NRML",
                   "market_protection": -1}
            start = trio.current_time()
            response = await http.post("/accounts/primary/batch-orders",
                                       json={"orders": [leg] * 10, "timeout_s": 8})
            elapsed = trio.current_time() - start
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "success", response.json()
            assert elapsed >= 5.0  # the fills were held, not taken by the next price step
            assert await _refused(venue) == {}
            actor = running.actors["primary"]
            assert actor.upstream.reconnects == 0
            # One listing serves every leg that polls meanwhile: about one a second.
            assert actor.broker.listings <= 2 * elapsed + 2, actor.broker.listings


async def test_a_reconcile_refused_with_429_is_retried_on_the_same_ticker(
    tmp_path: Path,
) -> None:
    """Another reader spends the venue's read budget while the ticker reconnects: the
    reconcile is retried, no second reconnect."""
    with trio.fail_after(30):
        async with open_test_service(
            tmp_path, venue_toml="read_limit_per_s = 1", limits_toml="reads_per_s = 0",
        ) as running, venue_control(running) as venue:
            assert running.venue is not None
            actor = running.actors["primary"]
            await wait_upstream(actor, "connected")
            hogged = trio.Event()
            async with kite_http(running.venue) as kite, trio.open_nursery() as nursery:

                async def hog() -> None:  # takes the one read of every second, for 3 s
                    until = trio.current_time() + 3
                    while trio.current_time() < until:
                        if (await kite.get("/orders")).status_code == 200:
                            hogged.set()
                        await trio.sleep(0.02)

                nursery.start_soon(hog)
                await hogged.wait()
                await venue.post("/_venue/faults", json={"drop_ticker": True})
                await wait_upstream(actor, "reconnecting")
            await wait_upstream(actor, "connected")
            assert (await _refused(venue)).get("read_limit_per_s", 0) > 0
            assert actor.upstream.reconnects == 1


async def test_the_venue_limits_reads_minutes_days_and_modifications(
    nursery: trio.Nursery,
) -> None:
    address = await start_venue(nursery, read_limit_per_s=3, rate_limit_per_minute=4,
                                rate_limit_per_day=5, modifications_per_order=2)
    async with kite_http(address) as kite:
        statuses = [(await kite.get("/orders")).status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        order_id = await place(kite, order_form())
        for price in (20001, 20002):
            response = await kite.put(f"/orders/regular/{order_id}", data={"price": price})
            assert response.status_code == 200, response.text
        third = await kite.put(f"/orders/regular/{order_id}", data={"price": 20003})
        assert third.status_code == 429
        assert third.json()["error_type"] == "NetworkException"
        assert "modifications" in third.json()["message"]
        await place(kite, order_form())  # the 4th write of the minute
        fifth = await kite.post("/orders/regular", data=order_form())
        assert fifth.status_code == 429 and "a minute" in fifth.json()["message"]
    async with kite_http(address) as kite:
        limits = (await kite.get("/_venue/limits")).json()["data"]["refused"]
        assert limits == {"read_limit_per_s": 1, "modifications_per_order": 1,
                          "rate_limit_per_minute": 1}


async def test_the_venue_counts_a_day_of_orders(nursery: trio.Nursery) -> None:
    address = await start_venue(nursery, rate_limit_per_day=2)
    async with kite_http(address) as kite:
        await place(kite, order_form())
        await place(kite, order_form())
        third = await kite.post("/orders/regular", data=order_form())
        assert third.status_code == 429 and "a day" in third.json()["message"]


async def test_fill_delay_holds_a_market_fill_through_price_steps(
    nursery: trio.Nursery,
) -> None:
    address = await start_venue(nursery)
    async with kite_http(address) as kite:
        await kite.post("/_venue/faults", json={"fill_delay_ms": 1500})
        start = trio.current_time()
        order_id = await place(kite, market_form())
        await kite.post("/_venue/step", json={"steps": 5})
        assert (await latest(kite, order_id))["status"] == "OPEN"
        async def complete() -> bool:
            return (await latest(kite, order_id))["status"] == "COMPLETE"

        await wait_until(complete, "the delayed fill", 5)
        assert trio.current_time() - start >= 1.5


async def test_callers_share_the_listing_in_flight() -> None:
    started: list[int] = []
    release = trio.Event()

    async def fetch() -> list[int]:
        started.append(len(started))
        await release.wait()
        return list(started)

    shared: SharedCall[list[int]] = SharedCall(fetch)
    results: list[list[int]] = []

    async def ask() -> None:
        results.append(await shared.get())

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert shared.calls == 2  # the first caller's, then one for the nine who asked meanwhile
    assert sorted(map(len, results)) == [1] + [2] * 9


async def test_a_failed_listing_fails_every_caller_that_shared_it() -> None:
    async def fetch() -> list[int]:
        await trio.lowlevel.checkpoint()
        raise RateLimited("Too many requests", status=429)

    shared: SharedCall[list[int]] = SharedCall(fetch)
    errors: list[BrokerError] = []

    async def ask() -> None:
        try:
            await shared.get()
        except BrokerError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(ask)
    assert len(errors) == 3 and shared.calls == 2


class _Listing:
    """A result that can be watched for being freed."""


async def test_a_listing_is_kept_only_for_callers_that_take_an_older_one() -> None:
    """A reconcile's listing (the whole day's orders) is not held after its callers are done;
    one that a routine poll joined serves the next poll within its age."""
    shared: SharedCall[_Listing] = SharedCall(_fetch_listing)
    fresh = weakref.ref(await shared.get())
    gc.collect()
    assert fresh() is None
    polled = await shared.get(max_age_s=60)
    assert await shared.get(max_age_s=60) is polled
    assert shared.calls == 2


async def _fetch_listing() -> _Listing:
    await trio.lowlevel.checkpoint()
    return _Listing()
