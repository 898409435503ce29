"""The paper venue across restarts: order ids never repeat (in memory or with a state file), and
a state file brings back orders with their history, positions and the funds they use."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import httpx
import trio

from brokers.paper.config import IST
from brokers.paper.ids import OrderIds
from tests.fixtures_venue import (
    history,
    kite_http,
    market_form,
    order_form,
    place,
    start_venue,
)


async def venue_view(kite: httpx.AsyncClient) -> dict[str, Any]:
    """What a client sees of the account: orders, positions (no LTP-derived fields), margins."""

    async def data(path: str) -> Any:
        response = await kite.get(path)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    orders = await data("/orders")
    positions = [{k: p[k] for k in ("tradingsymbol", "product", "quantity", "average_price",
                                    "buy_quantity", "buy_value", "sell_quantity")}
                 for p in (await data("/portfolio/positions"))["net"]]
    return {"orders": orders, "positions": positions,
            "histories": {o["order_id"]: await history(kite, o["order_id"]) for o in orders},
            "equity": await data("/user/margins/equity")}


async def run_venue(state_file: str | None, forms: list[dict[str, Any]]) -> dict[str, Any]:
    """Start a venue, place `forms`, stop it; what it showed just before it stopped."""
    async with trio.open_nursery() as nursery:
        address = await start_venue(nursery, state_file=state_file)
        async with kite_http(address) as kite:
            for form in forms:
                await place(kite, form)
            view = await venue_view(kite)
        nursery.cancel_scope.cancel()
    return view


def ids(view: dict[str, Any]) -> list[str]:
    return [o["order_id"] for o in view["orders"]]


async def test_in_memory_restarts_never_reuse_an_order_id() -> None:
    with trio.fail_after(20):
        runs = [await run_venue(None, [market_form(), order_form()]) for _ in range(3)]
    seen = [order_id for view in runs for order_id in ids(view)]
    assert len(seen) == 6 and len(set(seen)) == 6, seen
    assert seen == sorted(seen), "ids grow across restarts"
    assert all(len(i) == 15 and i.isdigit() for i in seen), seen
    assert all(i.startswith(f"{dt.datetime.now(IST):%y%m%d}") for i in seen), seen


async def test_a_state_file_restores_orders_positions_and_funds(tmp_path: Path) -> None:
    state = str(tmp_path / "var" / "venue.json")
    with trio.fail_after(20):
        # A filled BUY (a position, margin used) and a LIMIT resting OPEN (margin blocked).
        before = await run_venue(state, [market_form(), order_form()])
        after = await run_venue(state, [])
        third = await run_venue(state, [order_form(price=20100)])
    assert [o["status"] for o in before["orders"]] == ["COMPLETE", "OPEN"]
    assert after == before
    assert before["equity"]["utilised"]["debits"] > 0
    new_id = ids(third)[-1]
    assert ids(third)[:2] == ids(before) and new_id > max(ids(before)), ids(third)
    saved = json.loads(await trio.Path(state).read_text())
    assert saved["last_order_id"] == int(new_id) and len(saved["orders"]) == 3


async def test_orders_of_an_earlier_day_are_not_restored_positions_are(tmp_path: Path) -> None:
    state = tmp_path / "venue.json"
    with trio.fail_after(20):
        before = await run_venue(str(state), [market_form()])
        saved = json.loads(await trio.Path(state).read_text())
        for order in saved["orders"]:
            order["order_timestamp"] = "2020-01-01 09:15:00"
        await trio.Path(state).write_text(json.dumps(saved))
        after = await run_venue(str(state), [])
    assert after["orders"] == [] and after["positions"] == before["positions"]


def test_order_ids_grow_within_one_millisecond_and_after_a_restart() -> None:
    now = dt.datetime(2025, 12, 24, 9, 15, 0, 123000, tzinfo=IST)
    first = OrderIds()
    issued = [first.next(now) for _ in range(25)]  # more than ten in one millisecond
    assert issued[0] == "251224333001230"  # YYMMDD, then ms since midnight x 10
    assert issued == sorted(set(issued)) and all(len(i) == 15 for i in issued)
    restarted = OrderIds()
    later = restarted.next(now + dt.timedelta(milliseconds=5))
    assert later > issued[-1], (later, issued[-1])
