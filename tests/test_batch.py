"""The batch coordinator over the real paper venue, a real store and a running AccountActor.

Outcomes are asserted at the venue (its `/orders` and `/portfolio/positions`), not only in the
coordinator's result. The venue's own rate limit is off here; the rate-limit test enables it.
Timeouts are small (BatchConfig below) so that deadline and rollback paths stay fast.
"""

from __future__ import annotations

import json
import re
from typing import Any

import attrs
import pytest
import trio

from actors.requests import BatchRequest, LegRequest
from tests.fixtures_desk import FAST, Desk, open_desk
from tests.fixtures_orders import leg, strangle, tags
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, NIFTY_FUT, start_venue
from tests.fixtures_web import replied, typed

# -- the happy path and the shape -----------------------------------------------------------


async def test_all_legs_fill_is_success(desk: Desk) -> None:
    with trio.fail_after(15):
        status, result = await desk.submit({"orders": strangle(), "rollback_on_failure": True})
    assert status == 200 and result["status"] == "success", result
    assert (result["total_orders"], result["succeeded"], result["failed"]) == (4, 4, 0)
    assert len(result["order_ids"]) == 4 and result["duration_ms"] >= 0
    for n, item in enumerate(result["legs"]):
        assert item["index"] == n and item["status"] == "COMPLETE" and item["rollback"] is None
        assert item["tag"] == f"od{result['batch_id']}{n}L0" and len(item["tag"]) <= 20
        assert item["filled_quantity"] == strangle()[n]["quantity"] and item["average_price"] > 0
    assert await desk.positions() == {NIFTY_FUT: 75, BANKNIFTY_FUT: -35, NIFTY_CE: 75}
    venue_orders = await desk.orders()
    assert sorted(o["order_id"] for o in venue_orders) == sorted(result["order_ids"])
    assert all(n == 1 for n in tags(venue_orders).values())
    assert (await replied(desk.coordinator.get("primary", result["batch_id"]))) == (200, result)
    stored = await desk.store.get_batch(result["batch_id"])
    assert stored is not None and stored[0].status == "success"
    assert [r.status for r in stored[1]] == ["COMPLETE"] * 4


async def test_invalid_input_is_422_and_nothing_is_placed(desk: Desk) -> None:
    body = {"orders": [leg(), leg(quantity=70), leg("NOPE"), leg(tag="mine")]}
    with trio.fail_after(10):
        status, result = await desk.submit(body)
    assert status == 422
    assert {(f["path"], f["rule"]) for f in result["fields"]} == {
        ("orders[1].quantity", "lot_multiple"),
        ("orders[2].tradingsymbol", "unknown_instrument"),
        ("orders[3].tag", "forbidden"),
    }
    assert await desk.orders() == []


async def test_insufficient_margin_is_refused_before_placing(
    nursery: trio.Nursery, sqlite_url: str
) -> None:
    venue = await start_venue(nursery, funds=100_000.0)
    with trio.fail_after(10):
        async with open_desk(venue, sqlite_url) as poor:
            status, result = await poor.submit({"orders": [leg(), leg(BANKNIFTY_FUT, quantity=35)]})
            assert status == 422, result
            assert [(f["path"], f["rule"]) for f in result["fields"]] == [("orders", "margin")]
            # amounts as the desk shows them: ₹ with Indian digit grouping
            message = result["fields"][0]["message"]
            assert re.fullmatch(r"the basket needs ₹\d{1,2}(,\d\d)*,\d{3}\.\d\d margin, "
                                r"₹1,00,000\.00 is available", message), message
            assert await poor.orders() == []


# -- rollback ---------------------------------------------------------------------------------


async def test_leg_3_of_4_rejected_rolls_back_to_flat(desk: Desk) -> None:
    await desk.faults(reject_symbols=[BANKNIFTY_FUT])
    legs = [leg(), leg(NIFTY_CE, quantity=150), leg(BANKNIFTY_FUT, "SELL", 35),
            leg(NIFTY_CE, "SELL", 75)]
    with trio.fail_after(15):
        status, result = await desk.submit({"orders": legs, "rollback_on_failure": True})
    assert status == 200 and result["status"] == "rolled_back", result
    assert result["legs"][2]["status"] == "REJECTED" and result["legs"][2]["error"]
    assert result["failed"] >= 1
    assert await desk.positions() == {}
    for item in result["legs"]:
        if item["filled_quantity"]:
            assert item["rollback"]["action"] == "flattened"
            assert item["rollback"]["filled"] == item["filled_quantity"]
    venue_tags = tags(await desk.orders())
    assert all(n == 1 for n in venue_tags.values())
    reverses = [t for t in venue_tags if t[-2] == "R"]
    assert len(reverses) == sum(1 for i in result["legs"] if i["filled_quantity"])


async def test_limit_leg_that_never_fills_fails_at_the_deadline(desk: Desk) -> None:
    body = {"orders": [leg(), leg(order_type="LIMIT", price=20000.0)], "timeout_s": 1}
    with trio.fail_after(15):
        status, result = await desk.submit(body)
    assert result["status"] == "rolled_back", result
    limit = result["legs"][1]
    assert limit["status"] == "CANCELLED" and "deadline" in limit["error"]
    assert limit["rollback"]["action"] == "cancelled"
    assert result["legs"][0]["rollback"]["action"] == "flattened"
    assert await desk.positions() == {}
    assert all(o["status"] in ("COMPLETE", "CANCELLED") for o in await desk.orders())


async def test_partial_fill_then_failure_flattens_the_filled_part(desk: Desk) -> None:
    await desk.faults(partial_fill_ratio=0.5)
    body = {"orders": [leg(quantity=150)], "timeout_s": 1}
    with trio.fail_after(15):
        status, result = await desk.submit(body)
    assert result["status"] == "rolled_back", result
    item = result["legs"][0]
    assert item["status"] == "CANCELLED" and item["filled_quantity"] == 75
    assert item["rollback"] == {"action": "flattened", "order_id": item["rollback"]["order_id"],
                                "status": "COMPLETE", "filled": 75, "remaining": 0}
    assert await desk.positions() == {}


async def test_a_fill_that_lands_while_its_cancel_is_in_flight_is_flattened(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LIMIT leg misses the deadline; the rollback cancels it, and the market crosses it
    after the coordinator sent the cancel but before the venue got it. (The venue's `latency_ms`
    delays answers after processing, so it cannot open this window: the broker's `cancel` does,
    moving the price first.) The venue refuses the cancel, the leg ends COMPLETE: flattened."""
    broker = desk.actor.broker
    real_cancel = broker.cancel
    crossed: list[str] = []

    async def cancel_overtaken_by_a_fill(order_id: str, **options: Any) -> str:
        if not crossed:
            crossed.append(order_id)
            await desk.ltp(NIFTY_FUT, 19990.0)  # the resting BUY at 20000 fills now
        return await real_cancel(order_id, **options)

    monkeypatch.setattr(broker, "cancel", cancel_overtaken_by_a_fill)
    body = {"orders": [leg(BANKNIFTY_FUT, quantity=35),
                       leg(order_type="LIMIT", price=20000.0)], "timeout_s": 1}
    with trio.fail_after(15):
        status, result = await desk.submit(body)
    assert status == 200 and result["status"] == "rolled_back", result
    late = result["legs"][1]
    assert crossed == [late["order_id"]]
    assert late["status"] == "COMPLETE" and late["filled_quantity"] == 75
    assert late["rollback"]["action"] == "flattened" and late["rollback"]["filled"] == 75
    assert result["legs"][0]["rollback"]["action"] == "flattened"
    assert await desk.positions() == {}
    orders = await desk.orders()
    assert all(n == 1 for n in tags(orders).values())
    venue = {o["tag"]: o for o in orders}
    assert venue[late["tag"]]["status"] == "COMPLETE"  # the cancel lost the race
    reverse = venue[f"od{result['batch_id']}1R0"]
    assert reverse["transaction_type"] == "SELL" and reverse["filled_quantity"] == 75


async def test_without_rollback_a_failed_batch_is_partial(desk: Desk) -> None:
    await desk.faults(reject_symbols=[BANKNIFTY_FUT])
    body = {"orders": [leg(), leg(BANKNIFTY_FUT, quantity=35)], "rollback_on_failure": False}
    with trio.fail_after(15):
        status, result = await desk.submit(body)
    assert result["status"] == "partial", result
    assert (result["succeeded"], result["failed"]) == (1, 1)
    assert await desk.positions() == {NIFTY_FUT: 75}


async def test_a_rejected_reverse_is_rollback_failed_naming_the_exposure(desk: Desk) -> None:
    sub = desk.actor.subscribe()
    body = {"orders": [leg(), leg(order_type="LIMIT", price=20000.0)], "timeout_s": 2}
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            outcome: list[tuple[int, dict]] = []

            async def run() -> None:
                outcome.append(await desk.submit(body))

            nursery.start_soon(run)
            async for text in sub.receive:  # the future leg filled: now reject its reverse
                order = json.loads(text).get("order") or {}
                if order.get("tradingsymbol") == NIFTY_FUT and order.get("status") == "COMPLETE":
                    break
            await desk.faults(reject_symbols=[NIFTY_FUT])
    desk.actor.unsubscribe(sub)
    status, result = outcome[0]
    assert status == 200 and result["status"] == "rollback_failed", result
    rollback = result["legs"][0]["rollback"]
    assert rollback["action"] == "failed" and rollback["status"] == "REJECTED"
    assert rollback["remaining"] == 75
    assert result["exposure"] == [{
        "index": 0, "tradingsymbol": NIFTY_FUT, "exchange": "NFO", "product": "NRML",
        "transaction_type": "BUY", "quantity": 75, "open_order_ids": [],
    }]
    assert await desk.positions() == {NIFTY_FUT: 75}
    assert desk.coordinator.counters["rollback_failed"] == 1


async def test_place_timeout_after_acceptance_is_found_by_tag_never_placed_twice(
    nursery: trio.Nursery, sqlite_url: str
) -> None:
    venue = await start_venue(nursery)
    config = attrs.evolve(FAST, place_timeout_s=0.2, rollback_timeout_s=8.0)
    with trio.fail_after(20):
        async with open_desk(venue, sqlite_url, config) as slow:
            await slow.faults(latency_ms=400, reject_symbols=[BANKNIFTY_FUT])
            status, result = await slow.submit({"orders": [leg(), leg(BANKNIFTY_FUT, quantity=35)],
                                                "timeout_s": 5})
            await slow.faults(latency_ms=0)
            assert result["status"] == "rolled_back", result
            assert result["legs"][0]["status"] == "COMPLETE"
            assert result["legs"][0]["rollback"]["action"] == "flattened"
            venue_tags = tags(await slow.orders())
            assert all(n == 1 for n in venue_tags.values()), venue_tags
            assert len(venue_tags) == 3  # two legs, one reverse
            assert await slow.positions() == {}


async def test_client_hanging_up_does_not_stop_the_rollback(desk: Desk) -> None:
    body = {"orders": [leg(), leg(order_type="LIMIT", price=20000.0)], "timeout_s": 1}
    with trio.fail_after(15):
        with trio.move_on_after(0.3):  # the client goes away mid-batch
            await desk.submit(body, key="hang-up")
        status, result = await desk.submit(body, key="hang-up")  # its retry waits for the end
    assert status == 200 and result["status"] == "rolled_back", result
    assert await desk.positions() == {}
    assert len(tags(await desk.orders())) == 3


# -- idempotency, execution modes, single orders ----------------------------------------------


async def test_idempotent_retries_place_once(desk: Desk) -> None:
    body = {"orders": [leg(), leg(BANKNIFTY_FUT, "SELL", 35)]}
    results: list[tuple[int, dict]] = []

    async def send() -> None:
        results.append(await desk.submit(body, key="k-1"))

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for _ in range(3):
                nursery.start_soon(send)
        results.append(await desk.submit(body, key="k-1"))
        conflict = await desk.submit({"orders": [leg()]}, key="k-1")
    assert {s for s, _ in results} == {200}
    assert len({json.dumps(r, sort_keys=True) for _, r in results}) == 1
    assert results[0][1]["status"] == "success"
    assert len(await desk.orders()) == 2
    assert conflict[0] == 409 and conflict[1]["error"] == "idempotency_conflict"


async def test_hedge_first_places_sells_only_after_every_buy_completes(desk: Desk) -> None:
    body = {"orders": [leg(NIFTY_CE, "SELL", 75), leg(order_type="LIMIT", price=23000.0)],
            "execution": "hedge_first", "timeout_s": 10}
    sub = desk.actor.subscribe()
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            outcome: list[tuple[int, dict]] = []

            async def run() -> None:
                outcome.append(await desk.submit(body))

            nursery.start_soon(run)
            async for text in sub.receive:
                order = json.loads(text).get("order") or {}
                if order.get("transaction_type") == "BUY" and order.get("status") == "OPEN":
                    break
            # the BUY rests: no SELL may be at the venue yet
            assert [o["transaction_type"] for o in await desk.orders()] == ["BUY"]
            await desk.ltp(NIFTY_FUT, 22990.0)  # the BUY fills, then the SELL goes in
    desk.actor.unsubscribe(sub)
    assert outcome[0][1]["status"] == "success", outcome
    assert sorted(o["transaction_type"] for o in await desk.orders()) == ["BUY", "SELL"]


async def test_single_order_and_cancel(desk: Desk) -> None:
    with trio.fail_after(10):
        status, placed = await replied(desk.coordinator.place_single(
            "primary", *typed(leg(order_type="LIMIT", price=20000.0), LegRequest), "test"))
        assert status == 200 and placed["tag"].startswith("od")
        assert (await desk.orders())[0]["tag"] == placed["tag"]
        status, _ = await replied(
            desk.coordinator.cancel_order("primary", placed["order_id"], "test"))
        assert status == 200
        assert (await desk.orders())[0]["status"] == "CANCELLED"
        status, again = await replied(desk.coordinator.cancel_order("primary", placed["order_id"]))
        assert status == 400 and again["error"] == "rejected"
        status, bad = await replied(desk.coordinator.place_single(
            "primary", *typed(leg(quantity=1), LegRequest)))
        assert status == 422 and bad["fields"][0]["path"] == "quantity"
        assert (await replied(desk.coordinator.submit(
            "nobody", *typed({}, BatchRequest), None)))[0] == 404
