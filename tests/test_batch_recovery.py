"""Recovery at start (by tag), the kill switch, and the shared order-rate limiter at the venue.

A crash is simulated by writing what the store holds at that moment (the batch, its legs, the
reverse orders written ahead) and placing at the venue what had reached it, then starting a
coordinator on that store: `run()` reconciles every unfinished batch before it reports started.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from brokers.paper import VenueAddress
from store import LegRecord
from tests.fixtures_desk import (
    Desk,
    crashed_batch,
    open_desk,
    place_at_venue,
    resume,
    stored_request,
)
from tests.fixtures_orders import leg, tags
from tests.fixtures_venue import (
    BANKNIFTY_FUT,
    NIFTY_FUT,
    kite_http,
    market_form,
    order_form,
    start_venue,
)
from tests.fixtures_web import replied


async def test_killed_after_leg_0_placed_is_rolled_back_at_start(
    venue: VenueAddress, sqlite_url: str
) -> None:
    legs = [("BUY", "PLACED"), ("SELL", "PLACING")]
    batch_id, leg_tags = await crashed_batch(sqlite_url, "crash-1", legs)
    with trio.fail_after(20):
        await place_at_venue(venue, "BUY", leg_tags[0])  # what reached the broker
        async with open_desk(venue, sqlite_url) as desk:  # the restart
            result = await resume(desk, "crash-1", legs)
            assert result["status"] == "rolled_back", result
            assert result["legs"][0]["rollback"]["action"] == "flattened"
            assert result["legs"][1]["status"] == "NOT_PLACED"
            assert await desk.positions() == {}
            assert set(tags(await desk.orders())) == {leg_tags[0], f"od{batch_id}0R0"}


async def test_every_leg_complete_at_the_crash_is_success(
    venue: VenueAddress, sqlite_url: str
) -> None:
    legs = [("BUY", "PLACED"), ("SELL", "PLACED")]
    _, leg_tags = await crashed_batch(sqlite_url, "crash-2", legs)
    with trio.fail_after(20):
        await place_at_venue(venue, "BUY", leg_tags[0])
        await place_at_venue(venue, "SELL", leg_tags[1])
        async with open_desk(venue, sqlite_url) as desk:
            result = await resume(desk, "crash-2", legs)
            assert result["status"] == "success", result
            assert [item["status"] for item in result["legs"]] == ["COMPLETE", "COMPLETE"]
            assert len(await desk.orders()) == 2  # nothing placed by recovery


async def test_an_interrupted_rollback_never_flattens_twice(
    venue: VenueAddress, sqlite_url: str
) -> None:
    legs = [("BUY", "COMPLETE"), ("SELL", "REJECTED")]
    reverse_tag = "odBATCH0R0"
    reverse = LegRecord("", 100, reverse_tag, "PLACING", None, stored_request("SELL"), {},
                        kind="reverse")
    batch_id, leg_tags = await crashed_batch(sqlite_url, "crash-3", legs, "rolling_back",
                                             [reverse])
    with trio.fail_after(20):
        await place_at_venue(venue, "BUY", leg_tags[0])
        await place_at_venue(venue, "SELL", f"od{batch_id}0R0")  # the reverse had landed
        async with open_desk(venue, sqlite_url) as desk:
            result = await resume(desk, "crash-3", legs)
            assert result["status"] == "rolled_back", result
            rollback = result["legs"][0]["rollback"]
            assert (rollback["action"], rollback["filled"], rollback["remaining"]) == (
                "flattened", 75, 0)
            assert result["legs"][1]["rollback"]["action"] == "none"
            assert await desk.positions() == {}
            assert len(await desk.orders()) == 2


async def test_fewer_fills_at_the_broker_than_stored_follow_the_broker_as_a_conflict(
    venue: VenueAddress, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The red team's case: the store held 75 filled on a leg stopped mid-rollback, the broker
    (a venue that lost the fill) lists it OPEN with none. Nothing is flattened that the broker
    does not say is filled, and the account's health names the disagreement."""
    legs = [("BUY", "OPEN"), ("SELL", "REJECTED")]
    batch_id, leg_tags = await crashed_batch(sqlite_url, "crash-5", legs, "rolling_back",
                                             filled={0: 75})
    with trio.fail_after(20):
        async with kite_http(venue) as kite:  # resting: OPEN, nothing filled
            response = await kite.post("/orders/regular", data=order_form(tag=leg_tags[0]))
            assert response.status_code == 200, response.text
            order_id = response.json()["data"]["order_id"]
        async with open_desk(venue, sqlite_url) as desk:
            result = await resume(desk, "crash-5", legs)
            assert result["status"] == "rolled_back", result
            first = result["legs"][0]
            assert (first["status"], first["filled_quantity"]) == ("CANCELLED", 0), first
            assert first["rollback"]["action"] != "flattened", first
            assert await desk.positions() == {}
            assert set(tags(await desk.orders())) == {leg_tags[0]}  # no reverse order
            assert desk.actor.order_conflicts == 1
    assert [r.getMessage() for r in caplog.records if f"batch {batch_id} leg 0" in r.getMessage()
            ] == [f"account primary: batch {batch_id} leg 0 ({leg_tags[0]}, order "
                  f"{order_id}): the broker lists 0 filled, the store held 75; "
                  "recovery follows the broker"]


async def test_a_reverse_placed_before_its_row_was_stored_is_found_by_its_tag(
    venue: VenueAddress, sqlite_url: str
) -> None:
    """A slow store: the rollback placed its reverse after the bound on its write-ahead, and
    the process died before the row was stored. Recovery finds it at the venue by its tag
    (derived from the leg's), counts it, stores its row and places nothing more."""
    legs = [("BUY", "COMPLETE"), ("SELL", "REJECTED")]
    batch_id, leg_tags = await crashed_batch(sqlite_url, "crash-4", legs, "rolling_back")
    reverse_tag = f"od{batch_id}0R0"
    with trio.fail_after(20):
        await place_at_venue(venue, "BUY", leg_tags[0])
        reverse_id = await place_at_venue(venue, "SELL", reverse_tag)  # no row for it
        async with open_desk(venue, sqlite_url) as desk:
            result = await resume(desk, "crash-4", legs)
            assert result["status"] == "rolled_back", result
            rollback = result["legs"][0]["rollback"]
            assert (rollback["action"], rollback["filled"], rollback["remaining"]) == (
                "flattened", 75, 0)
            assert await desk.positions() == {}
            assert len(await desk.orders()) == 2  # nothing flattened twice
            await desk.coordinator.drain(5)  # the rows written in the background are stored
            found = await desk.store.get_batch(batch_id)
            assert found is not None
            [row] = [r for r in found[1] if r.kind == "reverse"]
            assert (row.index, row.tag, row.order_id, row.status) == (
                100, reverse_tag, reverse_id, "COMPLETE")


async def test_kill_switch_cancels_open_orders_and_flattens_positions(desk: Desk) -> None:
    with trio.fail_after(20):
        for form in (market_form(quantity=150),
                     market_form(tradingsymbol=BANKNIFTY_FUT, quantity=35,
                                 transaction_type="SELL"),
                     order_form()):  # a LIMIT BUY resting far below the market
            response = await desk.kite.post("/orders/regular", data=form)
            assert response.status_code == 200, response.text
        assert await desk.positions() == {NIFTY_FUT: 150, BANKNIFTY_FUT: -35}
        status, report = await replied(desk.coordinator.kill("primary", "test"))
    assert status == 200 and report["status"] == "done", report
    assert len(report["cancelled"]) == 1 and report["cancelled"][0]["status"] == "CANCELLED"
    assert {f["tradingsymbol"] for f in report["flattened"]} == {NIFTY_FUT, BANKNIFTY_FUT}
    assert await desk.positions() == {}
    assert all(o["status"] in ("COMPLETE", "CANCELLED") for o in await desk.orders())
    audit = await desk.store.list_audit("primary")
    assert [a.action for a in audit] == ["kill"]


async def test_two_ten_leg_batches_share_the_account_rate_limit(
    nursery: trio.Nursery, sqlite_url: str
) -> None:
    venue = await start_venue(nursery, rate_limit_per_s=10)
    results: list[dict[str, Any]] = []
    with trio.fail_after(20):
        async with open_desk(venue, sqlite_url) as desk:

            async def batch() -> None:
                status, result = await desk.submit({"orders": [leg()] * 10})
                assert status == 200
                results.append(result)

            async with trio.open_nursery() as inner:
                inner.start_soon(batch)
                inner.start_soon(batch)
            assert [r["status"] for r in results] == ["success", "success"], results
            venue_tags = tags(await desk.orders())
            assert len(venue_tags) == 20 and set(venue_tags.values()) == {1}
            limiter = desk.coordinator.limiter("primary")
            assert limiter is not None and limiter.statistics().granted >= 20
