"""`PUT /accounts/{id}/orders/{order_id}`: Kite's modify through the order path, asserted at the
paper venue (its order's price and quantity), in the audit log, and in each refusal's status."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from supervision.service import Running
from tests.fixtures_orders import leg
from tests.fixtures_service import ADMIN, api, venue_control
from tests.fixtures_venue import nifty_symbols, venue_orders
from tests.fixtures_waits import wait_until


async def _resting(http: httpx.AsyncClient, symbol: str) -> str:
    """A LIMIT BUY far below the market: it rests OPEN."""
    placed = await http.post("/accounts/primary/orders",
                             json={**leg(symbol), "order_type": "LIMIT", "price": 0.05})
    assert placed.status_code == 200, placed.text
    return str(placed.json()["order_id"])


async def _at_venue(venue: httpx.AsyncClient, order_id: str) -> dict[str, Any]:
    return next(o for o in await venue_orders(venue) if o["order_id"] == order_id)


async def test_modify_changes_the_order_at_the_venue_and_is_audited(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            _, opt = await nifty_symbols(venue)
            order_id = await _resting(http, opt)
            response = await http.put(f"/accounts/primary/orders/{order_id}",
                                      json={"price": 0.1, "quantity": 150})
            assert response.status_code == 200, response.text
            assert response.json() == {"order_id": order_id, "quantity": 150,
                                       "order_type": "LIMIT", "price": 0.1,
                                       "trigger_price": None}
            order = await _at_venue(venue, order_id)
            assert (order["status"], order["price"], order["quantity"]) == ("OPEN", 0.1, 150)
            book = await wait_until(lambda: service.actors["primary"].order(order_id),
                                    "the modified order in the account's book")
            assert book["order_id"] == order_id
        async with api(service, token=ADMIN) as admin:
            audit = (await admin.get("/admin/audit", params={"account": "primary"})).json()
            modify = [e for e in audit["entries"] if e["action"] == "modify"]
            assert [(e["order_id"], e["actor_name"]) for e in modify] == [
                (order_id, "primary-desk")]
            assert modify[0]["detail"]["price"] == 0.1


async def test_a_final_order_is_refused_with_409(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            fut, _ = await nifty_symbols(venue)
            placed = await http.post("/accounts/primary/orders", json=leg(fut))
            order_id = placed.json()["order_id"]
            await wait_until(lambda: (service.actors["primary"].order(order_id) or {}).get(
                "status") == "COMPLETE", "the filled order in the book")
            response = await http.put(f"/accounts/primary/orders/{order_id}",
                                      json={"quantity": 150})
            assert response.status_code == 409, response.text
            assert response.json()["error"] == "order_final"
            assert "COMPLETE" in response.json()["message"]
            assert (await _at_venue(venue, order_id))["quantity"] == 75


async def test_bad_bodies_are_422_field_by_field_and_send_nothing(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            _, opt = await nifty_symbols(venue)
            order_id = await _resting(http, opt)
            url = f"/accounts/primary/orders/{order_id}"
            cases = {
                "{}": ({}, [("", "required")]),
                "a string quantity": ({"quantity": "150"}, [("quantity", "type")]),
                "an unknown field": ({"side": "SELL"}, [("side", "unknown_field")]),
                "not a lot multiple": ({"quantity": 100}, [("quantity", "lot_multiple")]),
                "above the freeze": ({"quantity": 3600}, [("quantity", "freeze_limit")]),
                "off the tick": ({"price": 0.07}, [("price", "tick")]),
                "a price for MARKET": ({"order_type": "MARKET", "price": 1.0},
                                       [("price", "not_allowed")]),
            }
            for name, (body, expected) in cases.items():
                response = await http.put(url, json=body)
                assert response.status_code == 422, (name, response.text)
                fields = response.json()["fields"]
                assert [(f["path"], f["rule"]) for f in fields] == expected, (name, fields)
            freeze = (await http.put(url, json={"quantity": 3600})).json()["fields"][0]
            assert freeze["message"] == ("quantity 3600 (48 lots) is above the freeze limit of "
                                         "1800 (24 lots): split it into 2 orders of at most "
                                         "24 lots")
            bad_id = await http.put("/accounts/primary/orders/no%20such", json={"price": 1})
            assert bad_id.status_code == 422 and bad_id.json()["fields"][0]["path"] == "order_id"
            unknown = await http.put("/accounts/primary/orders/999999999", json={"price": 1})
            assert unknown.status_code == 404, unknown.text
            order = await _at_venue(venue, order_id)
            assert (order["price"], order["quantity"]) == (0.05, 75)  # untouched


async def test_a_venue_refusal_answers_its_message(service: Running) -> None:
    with trio.fail_after(30):
        async with api(service) as http, venue_control(service) as venue:
            _, opt = await nifty_symbols(venue)
            order_id = await _resting(http, opt)
            await venue.post("/_venue/faults", json={"price_band_pct": 1})
            response = await http.put(f"/accounts/primary/orders/{order_id}",
                                      json={"price": 0.1})
            assert response.status_code == 400, response.text
            assert response.json()["error"] == "rejected"
            assert "circuit" in response.json()["message"].lower()
            assert (await _at_venue(venue, order_id))["price"] == 0.05
