"""The result fields a client reads without looking at `legs`: `succeeded` counts the legs
whose fills are still held at the end, `failed` the legs that did not fill, and `order_ids`
are the legs' broker orders in leg order (reverse orders only in `legs[].rollback`).

One test per final status, each checked against the venue's positions."""

from __future__ import annotations

import json
from typing import Any

import trio

from tests.fixtures_desk import Desk
from tests.fixtures_orders import leg, strangle
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, NIFTY_FUT


def leg_order_ids(result: dict[str, Any]) -> list[str]:
    return [item["order_id"] for item in result["legs"] if item["order_id"]]


def reverse_order_ids(result: dict[str, Any]) -> set[str]:
    return {item["rollback"]["order_id"] for item in result["legs"]
            if item["rollback"] and item["rollback"]["order_id"]}


async def test_success_holds_every_leg(desk: Desk) -> None:
    with trio.fail_after(15):
        status, result = await desk.submit({"orders": strangle()})
    assert status == 200 and result["status"] == "success", result
    assert (result["succeeded"], result["failed"]) == (4, 0)
    assert result["order_ids"] == leg_order_ids(result) and len(result["order_ids"]) == 4


async def test_rolled_back_holds_nothing(desk: Desk) -> None:
    await desk.faults(reject_symbols=[BANKNIFTY_FUT])
    body = {"orders": [leg(), leg(BANKNIFTY_FUT, quantity=35)]}
    with trio.fail_after(15):
        status, result = await desk.submit(body)
    assert status == 200 and result["status"] == "rolled_back", result
    assert result["legs"][0]["rollback"]["action"] == "flattened"
    assert (result["succeeded"], result["failed"]) == (0, 1)
    assert result["order_ids"] == leg_order_ids(result)
    reverses = reverse_order_ids(result)
    assert reverses and not reverses & set(result["order_ids"])
    assert await desk.positions() == {}


async def test_partial_counts_the_legs_kept(desk: Desk) -> None:
    await desk.faults(reject_symbols=[BANKNIFTY_FUT])
    body = {"orders": [leg(), leg(BANKNIFTY_FUT, quantity=35), leg(NIFTY_CE)],
            "rollback_on_failure": False}
    with trio.fail_after(15):
        status, result = await desk.submit(body)
    assert status == 200 and result["status"] == "partial", result
    held = await desk.positions()
    kept = sum(1 for item in result["legs"] if item["status"] == "COMPLETE")
    assert result["succeeded"] == kept == len(held)
    assert result["failed"] == 1
    assert result["order_ids"] == leg_order_ids(result)


async def test_rollback_failed_counts_only_the_legs_still_held(desk: Desk) -> None:
    """Three legs: the future's reverse is rejected (held), BANKNIFTY is flattened (not held),
    the resting LIMIT never fills (failed)."""
    sub = desk.actor.subscribe()
    body = {"orders": [leg(), leg(BANKNIFTY_FUT, quantity=35),
                       leg(order_type="LIMIT", price=20000.0)], "timeout_s": 2}
    filled: set[str] = set()
    outcome: list[tuple[int, dict]] = []
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:

            async def run() -> None:
                outcome.append(await desk.submit(body))

            nursery.start_soon(run)
            async for text in sub.receive:  # both futures filled: now reject NIFTY's reverse
                order = json.loads(text).get("order") or {}
                if order.get("status") == "COMPLETE":
                    filled.add(order.get("tradingsymbol"))
                if {NIFTY_FUT, BANKNIFTY_FUT} <= filled:
                    break
            await desk.faults(reject_symbols=[NIFTY_FUT])
    desk.actor.unsubscribe(sub)
    status, result = outcome[0]
    assert status == 200 and result["status"] == "rollback_failed", result
    actions = [item["rollback"]["action"] for item in result["legs"]]
    assert actions[:2] == ["failed", "flattened"], actions
    assert (result["succeeded"], result["failed"]) == (1, 1)
    assert result["order_ids"] == leg_order_ids(result)
    assert not reverse_order_ids(result) & set(result["order_ids"])
    assert await desk.positions() == {NIFTY_FUT: 75}
