"""A broker that pushes what it should not: malformed and mistyped order updates on the ticker.

Each is logged and skipped where it is read (`brokers/kite.py` `parse_order`, strict about
types: `brokers/_wire.py`); the account's actor keeps its socket, its book and its subscribers,
and the next real update streams as usual. Found by a fuzzer: a status sent as a list reached
the book, whose final-status rule hashed it, and ended the actor.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from brokers.kite import parse_order
from tests.fixtures_web import Reader, WebStack, place_market

GOOD = {"order_id": "1", "status": "OPEN", "tradingsymbol": "SBIN", "exchange": "NSE",
        "quantity": 1, "price": "10.5", "filled_quantity": 0}

REFUSED: list[dict[str, Any]] = [
    {**GOOD, "status": ["COMPLETE"]},
    {**GOOD, "status": {"s": "COMPLETE"}},
    {**GOOD, "status": None},
    {k: v for k, v in GOOD.items() if k != "status"},
    {**GOOD, "order_id": None},
    {**GOOD, "order_id": ["1"]},
    {**GOOD, "order_id": True},
    {**GOOD, "order_id": ""},
    {**GOOD, "tradingsymbol": 5},
    {**GOOD, "tag": ["od-x"]},
    {**GOOD, "quantity": "abc"},
    {**GOOD, "quantity": 2.5},
    {**GOOD, "quantity": True},
    {**GOOD, "price": "nan"},
    {**GOOD, "price": float("inf")},
    {**GOOD, "filled_quantity": [1]},
    {**GOOD, "instrument_token": {"t": 1}},
]


@pytest.mark.parametrize("payload", REFUSED, ids=lambda p: repr(p)[:60])
def test_a_mistyped_order_payload_is_refused_whole(payload: dict[str, Any]) -> None:
    with pytest.raises(Exception):  # noqa: B017 -- ValueError or cattrs' group: both logged
        parse_order(payload)


def test_what_kite_sends_is_read_and_a_null_says_nothing() -> None:
    order = parse_order({**GOOD, "order_id": 2401, "tag": None, "validity": None})
    assert (order.order_id, order.price, order.quantity, order.tag, order.validity) == (
        "2401", 10.5, 1, None, "DAY")


HOSTILE_FRAMES = [
    "not json",
    "[" * 100_000,  # past the JSON parser's depth: RecursionError, not ValueError
    "null",
    "[]",
    json.dumps({"type": 5}),
    json.dumps({"type": "order"}),
    json.dumps({"type": "order", "data": [1, 2]}),
    json.dumps({"type": "error", "data": {"deep": [[[]]]}}),
    *(json.dumps({"type": "order", "data": p}) for p in REFUSED if "price" not in p
      or p["price"] == "10.5"),
    json.dumps({"type": "order", "data": {**GOOD, "order_id": "9", "price": "NaN"}}),
]


async def test_hostile_order_pushes_leave_the_account_streaming(web_stack: WebStack) -> None:
    actor = web_stack.actors["primary"]
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            ws = await web_stack.connect(nursery)
            reader = Reader(ws)
            await reader.until(lambda m: m["type"] == "snapshot")
            async with httpx.AsyncClient(base_url=web_stack.venue.rest_url) as venue:
                before = (await venue.get("/_venue/ticker/connects")).json()["data"]["open"]
                sent = await venue.post("/_venue/ticker/primary/frames",
                                        json={"frames": HOSTILE_FRAMES})
                assert sent.status_code == 200, sent.text
                assert sent.json()["data"] == {"account": "primary", "sent": len(HOSTILE_FRAMES),
                                               "sockets": 1}
                order_id = await place_market(web_stack.venue)
                update = await reader.until(
                    lambda m: m["type"] == "order" and m["order"]["order_id"] == order_id)
                assert update["order"]["status"] in ("OPEN", "COMPLETE")
                after = (await venue.get("/_venue/ticker/connects")).json()["data"]["open"]
            assert after == before  # the same sockets: no actor restarted, none reconnected
            seen = {m["order"]["order_id"] for m in reader.messages if m["type"] == "order"}
            assert seen == {order_id}, seen  # none of the hostile pushes reached a subscriber
            assert (actor.upstream.state, actor.upstream.reconnects) == ("connected", 0)
            await ws.aclose()
            nursery.cancel_scope.cancel()


async def test_the_frames_route_refuses_what_is_not_a_list_of_text(web_stack: WebStack) -> None:
    async with httpx.AsyncClient(base_url=web_stack.venue.rest_url) as venue:
        for body in ({"frames": "x"}, {"frames": [1]}, [], {"frame": []}):
            answer = await venue.post("/_venue/ticker/primary/frames", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert "frames" in answer.json()["message"]
