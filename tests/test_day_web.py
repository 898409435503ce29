"""A day of orders through the web front (issue 17): the websocket's snapshot and GET /orders
carry every working order and the newest final ones, `?before=` pages the rest in order with
no duplicates, and the book rolls over at IST midnight while running."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import httpx
import trio

from actors.account import ActorConfig
from actors.account.day import seconds_to_next_day
from actors.calendar import IST
from tests.fixtures_venue import kite_headers
from tests.fixtures_waits import wait_until
from tests.fixtures_web import TOKENS, Reader, WebStack, open_web_stack, place_market

FINISHED, OPEN = 13, 2


async def _resting(stack: WebStack) -> str:
    """A LIMIT BUY far below the market: it stays OPEN."""
    form = {"tradingsymbol": "SBIN", "exchange": "NSE", "transaction_type": "BUY",
            "order_type": "LIMIT", "quantity": "1", "price": "1", "product": "MIS",
            "validity": "DAY"}
    async with httpx.AsyncClient(base_url=stack.venue.rest_url, headers=kite_headers("primary"),
                                 timeout=10.0) as client:
        response = await client.post("/orders/regular", data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["order_id"])


async def _a_day(stack: WebStack) -> tuple[list[str], list[str]]:
    finished = [await place_market(stack.venue) for _ in range(FINISHED)]
    working = [await _resting(stack) for _ in range(OPEN)]
    actor = stack.actors["primary"]
    await wait_until(lambda: actor.order(working[-1]) and all(
        actor._book.final(o) for o in finished), "the day's orders in the book")
    return finished, working


async def test_snapshot_and_orders_route_are_bounded_and_page_the_rest(tmp_path: Path) -> None:
    config = ActorConfig(snapshot_finished=3, book_finished=5)
    with trio.fail_after(60):
        async with open_web_stack(tmp_path, accounts=("primary",), actor_config=config) as stack:
            finished, working = await _a_day(stack)
            newest = finished[::-1]  # settled in placing order
            actor = stack.actors["primary"]
            assert len(actor.orders()) == OPEN + 5  # the book itself is bounded

            async with trio.open_nursery() as nursery:
                reader = Reader(await stack.connect(nursery))
                snapshot = await reader.next()  # checked against the AsyncAPI schema
                nursery.cancel_scope.cancel()
            assert snapshot["type"] == "snapshot"
            shown = {o["order_id"] for o in snapshot["orders"]}
            assert shown == set(working) | set(newest[:3])
            assert snapshot["older_before"] == newest[2]

            async with stack.http(TOKENS["primary"]) as http:
                body = (await http.get("/accounts/primary/orders")).json()
                assert {o["order_id"] for o in body["orders"]} == shown
                assert body["older_before"] == newest[2]
                paged: list[str] = []
                cursor = body["older_before"]
                while cursor is not None:
                    reply = await http.get("/accounts/primary/orders",
                                           params={"before": cursor, "limit": 4})
                    assert reply.status_code == 200, reply.text
                    page = reply.json()
                    assert len(page["orders"]) <= 4
                    assert all(o["status"] == "COMPLETE" for o in page["orders"])
                    paged.extend(o["order_id"] for o in page["orders"])
                    cursor = page.get("older_before")
            assert paged == newest[3:]  # in order, none twice, none missing


async def test_the_book_rolls_over_at_ist_midnight_while_running(tmp_path: Path) -> None:
    # The actor's wall clock reads 1.5 s before the next IST midnight: the venue stamps the
    # orders with today's (real) date, the actor sees the day turn a moment later.
    offset = seconds_to_next_day(time.time()) - 1.5

    def clock() -> float:
        return time.time() + offset

    config = ActorConfig(wall_clock=clock)
    with trio.fail_after(30):
        async with open_web_stack(tmp_path, accounts=("primary",), actor_config=config) as stack:
            placed = await place_market(stack.venue)
            actor = stack.actors["primary"]
            await wait_until(lambda: actor.order(placed), "the order in the book")
            if dt.datetime.fromtimestamp(clock(), IST).date() != dt.datetime.now(IST).date():
                return  # the real day turned meanwhile (a run at midnight IST): nothing to see
            async with trio.open_nursery() as nursery:
                reader = Reader(await stack.connect(nursery))
                first = await reader.next()
                assert placed in {o["order_id"] for o in first["orders"]}
                seq = first["seq"]
                fresh = await reader.until(lambda m: m["type"] == "snapshot")
                assert fresh["orders"] == [] and fresh["seq"] == seq  # the seq goes on
                assert actor.orders() == [] and actor.seq == seq
                nursery.cancel_scope.cancel()


async def test_a_reconnect_applies_only_what_changed(tmp_path: Path) -> None:
    """After a ticker drop the reconcile lists the whole day; what the book already holds
    (retired final orders included) is not stored or sent again: the seq stays put, and the
    one order that changed while the ticker was down is the only update."""
    config = ActorConfig(snapshot_finished=2, book_finished=3, reconnect_initial_s=0.05,
                         reconnect_jitter_s=0.01)
    with trio.fail_after(60):
        async with open_web_stack(tmp_path, accounts=("primary",), actor_config=config) as stack:
            finished, working = await _a_day(stack)
            actor = stack.actors["primary"]
            seq, reconnects = actor.seq, actor.upstream.reconnects
            async with trio.open_nursery() as nursery:
                reader = Reader(await stack.connect(nursery))
                await reader.next()  # the snapshot
                async with httpx.AsyncClient(base_url=stack.venue.rest_url, timeout=10) as venue:
                    await venue.post("/_venue/faults", json={"stall_ticker": True})
                    await venue.post(f"/_venue/fill/{working[0]}")  # its push is lost
                    await venue.post("/_venue/faults", json={"stall_ticker": False,
                                                             "drop_ticker": True})
                await wait_until(lambda: actor.upstream.reconnects > reconnects
                                 and actor.upstream.state == "connected", "the reconnect")
                update = await reader.until(lambda m: m["type"] == "order")
                assert update["source"] == "reconcile"
                assert update["order"]["order_id"] == working[0]
                assert update["order"]["status"] == "COMPLETE"
                nursery.cancel_scope.cancel()
            assert actor.seq == seq + 1  # that fill, and nothing re-applied
