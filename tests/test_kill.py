"""The kill switch over the real paper venue: it waits for batches still rolling back, refuses new
orders while it runs, leaves alone what it could not wait for, survives an instrument-master
failure, cancels at the order's variety and never calls a kill "done" while an order is open.

Outcomes are asserted at the venue (its `/orders` and `/portfolio/positions`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

from actors.requests import LegRequest
from brokers.base import BrokerUnavailable, Order, OrderRejected
from brokers.paper import VenueAddress
from tests.fixtures_desk import FAST, Desk, crashed_batch, open_desk, place, place_at_venue, resume
from tests.fixtures_orders import leg, tags
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, NIFTY_FUT, market_form, order_form
from tests.fixtures_waits import wait_until
from tests.fixtures_web import replied, typed

#: A MARKET BUY that fills and a LIMIT BUY far below the market that never does: at the 1 s
#: deadline the batch rolls back (cancels the LIMIT, sells the 75 the MARKET leg bought).
ROLLING_BACK = {"orders": [leg(), leg(order_type="LIMIT", price=20000.0)], "timeout_s": 1}


async def wait_for_order(desk: Desk, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first venue order that `match`es (the venue's listing, over HTTP: polled)."""

    async def found() -> dict[str, Any] | None:
        return next((o for o in await desk.orders() if match(o)), None)

    return await wait_until(found, "a matching order at the venue", math.inf, poll_s=0.02)


def tag_of(order: dict[str, Any]) -> str:
    return order["tag"] or ""


async def start_rolling_back(
    desk: Desk, nursery: trio.Nursery, results: list[tuple[int, dict]], fill_delay_ms: int,
    finished: trio.Event | None = None,
) -> dict[str, Any]:
    """Submit ROLLING_BACK; once its MARKET leg filled, delay the venue's fills so the
    rollback's reverse order stays OPEN. Returns that reverse order, OPEN at the venue."""

    async def submit() -> None:
        results.append(await desk.submit(ROLLING_BACK))
        if finished is not None:
            finished.set()

    nursery.start_soon(submit)
    await wait_for_order(desk, lambda o: tag_of(o).endswith("0L0") and o["status"] == "COMPLETE")
    await desk.faults(fill_delay_ms=fill_delay_ms)
    return await wait_for_order(desk, lambda o: tag_of(o).endswith("0R0") and o["status"] == "OPEN")


async def test_kill_waits_for_a_batch_rolling_back_and_flattens_once(
    desk: Desk, nursery: trio.Nursery
) -> None:
    """The kill switch arrives while a batch's reverse order is working. It must not cancel the
    reverse and sell again (the rollback would then place another reverse: net -75): it waits
    for the rollback, and new batches and orders of the account are refused meanwhile."""
    results: list[tuple[int, dict]] = []
    refused: list[tuple[int, dict]] = []
    with trio.fail_after(30):
        await place(desk, market_form(tradingsymbol=BANKNIFTY_FUT, quantity=35,
                                      transaction_type="SELL"))  # not the batch's: flattened
        reverse = await start_rolling_back(desk, nursery, results, fill_delay_ms=1500)

        killed: list[tuple[int, dict]] = []

        async def kill() -> None:
            killed.append(await replied(desk.coordinator.kill("primary", "test")))

        async with trio.open_nursery() as inner:
            inner.start_soon(kill)
            await trio.testing.wait_all_tasks_blocked()  # it is waiting for the rollback
            assert desk.coordinator.killing("primary") and not killed
            refused.append(await desk.submit({"orders": [leg(NIFTY_CE)]}))
            refused.append(
                await replied(desk.coordinator.place_single(
                    "primary", *typed(leg(NIFTY_CE), LegRequest), "t")))
        [(status, report)] = killed
        assert not desk.coordinator.killing("primary")
        assert results and results[0][1]["status"] == "rolled_back", results
        assert await desk.positions() == {}
        orders = await desk.orders()
    assert status == 200 and report["status"] == "done", report
    assert [f["tradingsymbol"] for f in report["flattened"]] == [BANKNIFTY_FUT]
    assert report["cancelled"] == [] and report["unfinished"] == []
    assert [(code, body["error"]) for code, body in refused] == [
        (409, "kill_in_progress"), (409, "kill_in_progress")]
    assert NIFTY_CE not in {o["tradingsymbol"] for o in orders}  # nothing of theirs placed
    assert set(tags(orders).values()) == {1}  # every tag once: no second reverse
    venue = {o["order_id"]: o for o in orders}
    assert venue[reverse["order_id"]]["status"] == "COMPLETE"  # the reverse was not cancelled
    assert not [o for o in orders if tag_of(o).endswith("R1")]
    assert all(o["status"] in ("COMPLETE", "CANCELLED") for o in orders)


async def test_kill_that_cannot_wait_leaves_the_batch_symbols_alone(
    venue: VenueAddress, sqlite_url: str, nursery: trio.Nursery
) -> None:
    """The wait runs out while the rollback's reverse still works: the kill switch does not
    touch that batch's symbol (its rollback owns it), flattens the rest, and says so."""
    results: list[tuple[int, dict]] = []
    async with open_desk(venue, sqlite_url, attrs.evolve(FAST, kill_wait_s=0.2)) as desk:
        with trio.fail_after(30):
            await place(desk, market_form(tradingsymbol=BANKNIFTY_FUT, quantity=35,
                                          transaction_type="SELL"))
            finished = trio.Event()
            reverse = await start_rolling_back(desk, nursery, results, fill_delay_ms=2000,
                                               finished=finished)
            batch_id = reverse["tag"][2:12]
            status, report = await replied(desk.coordinator.kill("primary", "test"))
            assert status == 200 and report["status"] == "incomplete", report
            assert report["unfinished"] == [batch_id]
            assert report["skipped"] == [{"exchange": "NFO", "tradingsymbol": NIFTY_FUT}]
            assert report["cancelled"] == []
            assert [f["tradingsymbol"] for f in report["flattened"]] == [BANKNIFTY_FUT]
            await finished.wait()  # the batch finishes its own rollback
            assert results[0][1]["status"] == "rolled_back", results
            assert await desk.positions() == {}
            orders = await desk.orders()
            assert set(tags(orders).values()) == {1}
            assert {o["order_id"]: o["status"] for o in orders}[reverse["order_id"]] == "COMPLETE"
            assert not [o for o in orders if tag_of(o).endswith("R1")]


async def test_an_instrument_master_failure_still_flattens_every_position(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_master(exchange: str | None = None) -> list[Any]:
        raise BrokerUnavailable("instrument master: 503")

    monkeypatch.setattr(desk.actor.broker, "instruments", no_master)
    with trio.fail_after(20):
        await place(desk, market_form(quantity=150))
        await place(desk, market_form(tradingsymbol=BANKNIFTY_FUT, quantity=35,
                                      transaction_type="SELL"))
        assert await desk.positions() == {NIFTY_FUT: 150, BANKNIFTY_FUT: -35}
        status, report = await replied(desk.coordinator.kill("primary", "test"))
        assert await desk.positions() == {}
    assert status == 200 and report["status"] == "done", report
    assert report["warnings"] and "instrument master" in report["warnings"][0]
    by_symbol = {f["tradingsymbol"]: f["orders"] for f in report["flattened"]}
    assert {s: [o["filled_quantity"] for o in orders] for s, orders in by_symbol.items()} == {
        NIFTY_FUT: [150], BANKNIFTY_FUT: [35]}  # one unsliced order per position


async def test_a_known_master_slices_by_the_freeze_quantity(desk: Desk) -> None:
    with trio.fail_after(20):
        await place(desk, market_form(quantity=975))
        await place(desk, market_form(quantity=900))
        assert await desk.positions() == {NIFTY_FUT: 1875}
        status, report = await replied(desk.coordinator.kill("primary", "test"))
        assert await desk.positions() == {}
    assert status == 200 and report["status"] == "done", report
    [flattened] = report["flattened"]
    assert [o["filled_quantity"] for o in flattened["orders"]] == [1800, 75]


async def test_an_order_the_kill_could_not_cancel_makes_it_incomplete(
    venue: VenueAddress, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_desk(venue, sqlite_url, attrs.evolve(FAST, rollback_timeout_s=1.0)) as desk:

        async def refuse(order_id: str, **options: Any) -> str:
            raise OrderRejected("Order cannot be cancelled as it is being processed.")

        monkeypatch.setattr(desk.actor.broker, "cancel", refuse)
        with trio.fail_after(20):
            order_id = await place(desk, order_form())  # a LIMIT BUY resting OPEN
            status, report = await replied(desk.coordinator.kill("primary", "test"))
            venue_orders = {o["order_id"]: o["status"] for o in await desk.orders()}
    assert venue_orders == {order_id: "OPEN"}
    assert status == 200 and report["status"] == "incomplete", report
    assert report["open_orders"] == [order_id]
    assert report["cancelled"][0]["status"] == "OPEN" and report["cancelled"][0]["error"]


async def test_kill_cancels_at_the_orders_variety(
    desk: Desk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An order of another variety (Kite's `co`, `amo`, `iceberg`) is cancelled at
    `DELETE /orders/{variety}/{id}`. The venue has only `regular`: its listing is relabelled."""
    broker = desk.actor.broker
    real_orders, real_cancel = broker.orders, broker.cancel
    asked: list[tuple[str, str]] = []

    async def orders(*, max_age_s: float = 0.0) -> list[Order]:
        return [attrs.evolve(o, variety="co") for o in await real_orders(max_age_s=max_age_s)]

    async def cancel(order_id: str, *, variety: str = "regular") -> str:
        asked.append((order_id, variety))
        return await real_cancel(order_id)

    monkeypatch.setattr(broker, "orders", orders)
    monkeypatch.setattr(broker, "cancel", cancel)
    with trio.fail_after(20):
        order_id = await place(desk, order_form())
        status, report = await replied(desk.coordinator.kill("primary", "test"))
        venue_orders = {o["order_id"]: o["status"] for o in await desk.orders()}
    assert asked == [(order_id, "co")]
    assert venue_orders == {order_id: "CANCELLED"}
    assert status == 200 and report["status"] == "done", report


async def test_a_second_kill_while_one_runs_is_409(
    desk: Desk, nursery: trio.Nursery
) -> None:
    results: list[tuple[int, dict]] = []
    with trio.fail_after(30):
        await start_rolling_back(desk, nursery, results, fill_delay_ms=1000)
        first: list[tuple[int, dict]] = []

        async def kill() -> None:
            first.append(await replied(desk.coordinator.kill("primary", "one")))

        async with trio.open_nursery() as inner:
            inner.start_soon(kill)
            await trio.testing.wait_all_tasks_blocked()
            assert desk.coordinator.killing("primary")
            second = await replied(desk.coordinator.kill("primary", "two"))
        assert second[0] == 409 and second[1]["error"] == "kill_in_progress"
        assert first[0][0] == 200 and first[0][1]["status"] == "done", first
        assert await desk.positions() == {}
        assert set(tags(await desk.orders()).values()) == {1}


async def test_kill_waits_for_a_recovery_at_start(venue: VenueAddress, sqlite_url: str) -> None:
    """A batch left unfinished by a crash is being rolled back by recovery (its reverse order
    slowed down by the venue) when the kill switch is pressed: the kill waits for it."""
    legs = [("BUY", "PLACED"), ("SELL", "PLACING")]
    batch_id, leg_tags = await crashed_batch(sqlite_url, "crash-kill", legs)
    with trio.fail_after(30):
        await place_at_venue(venue, "BUY", leg_tags[0])  # what reached the broker
        async with httpx.AsyncClient(base_url=venue.rest_url) as control:
            response = await control.post("/_venue/faults", json={"fill_delay_ms": 1500})
            assert response.status_code == 200, response.text
        async with open_desk(venue, sqlite_url) as desk:  # the restart: recovery is running
            status, report = await replied(desk.coordinator.kill("primary", "test"))
            assert status == 200 and report["status"] == "done", report
            assert report["flattened"] == [] and report["cancelled"] == []
            assert (await resume(desk, "crash-kill", legs))["status"] == "rolled_back"
            assert await desk.positions() == {}
            assert tags(await desk.orders()) == {leg_tags[0]: 1, f"od{batch_id}0R0": 1}
