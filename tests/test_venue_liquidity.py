"""The venue's Kite refusals on thin contracts (faults) and its per-order modification limit,
over its REST API: the messages are Kite's, the status codes and error types too."""

from __future__ import annotations

import httpx
import trio

from brokers.paper.liquidity import MAX_MODIFICATIONS
from tests.fixtures_venue import NIFTY_FUT, assert_error, latest, market_form, order_form, place


async def set_faults(control: httpx.AsyncClient, **faults: object) -> dict:
    response = await control.post("/_venue/faults", json=faults)
    assert response.status_code == 200, response.text
    body: dict = response.json()["data"]
    return body


async def test_market_orders_are_refused_for_the_listed_symbols(
    kite: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    faults = await set_faults(control, reject_market_symbols=[f"NFO:{NIFTY_FUT}"])
    assert faults["reject_market_symbols"] == [f"NFO:{NIFTY_FUT}"]
    response = await kite.post("/orders/regular", data=market_form())
    assert_error(response, 400, "InputException", "Try placing a LIMIT order")
    assert (await kite.get("/orders")).json()["data"] == []  # refused before the book
    await place(kite, order_form(price=24000))  # a LIMIT goes through


async def test_a_limit_beyond_the_price_band_is_refused(
    kite: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    await set_faults(control, price_band_pct=5)
    response = await kite.post("/orders/regular", data=order_form(price=20000))
    assert_error(response, 400, "InputException", "circuit limits")
    order_id = await place(kite, order_form(price=22850))  # 4.8% below 24000: inside
    response = await kite.put(f"/orders/regular/{order_id}", data={"price": "22750"})
    assert_error(response, 400, "InputException", "circuit limits")


async def test_a_protected_market_rests_at_its_band_edge_until_the_price_reaches_it(
    kite: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    await set_faults(control, rest_protected_market=True)
    order_id = await place(kite, market_form(transaction_type="SELL", market_protection=2))
    order = await latest(kite, order_id)
    assert (order["status"], order["price"], order["filled_quantity"]) == ("OPEN", 23520, 0)
    await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 23800})
    assert (await latest(kite, order_id))["status"] == "OPEN"
    await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 23500})
    order = await latest(kite, order_id)
    assert (order["status"], order["average_price"]) == ("COMPLETE", 23520)


async def test_a_cancel_is_refused_while_the_order_is_being_processed(
    kite: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    await set_faults(control, cancel_refused_ms=300)
    order_id = await place(kite, order_form())
    response = await kite.delete(f"/orders/regular/{order_id}")
    assert_error(response, 400, "InputException", "being processed")
    with trio.fail_after(5):
        while True:  # polls the venue's own refusal window, bounded above
            response = await kite.delete(f"/orders/regular/{order_id}")
            if response.status_code == 200:
                break
            assert_error(response, 400, "InputException", "being processed")
            await trio.sleep(0.05)
    assert (await latest(kite, order_id))["status"] == "CANCELLED"


async def test_an_order_is_modified_at_most_25_times(kite: httpx.AsyncClient) -> None:
    order_id = await place(kite, order_form())
    for n in range(MAX_MODIFICATIONS):
        response = await kite.put(f"/orders/regular/{order_id}", data={"price": 20000 + n})
        assert response.status_code == 200, response.text
    response = await kite.put(f"/orders/regular/{order_id}", data={"price": 19000})
    assert_error(response, 400, "InputException", "Maximum allowed order modifications")


async def test_bad_liquidity_faults_are_refused_naming_the_field(
    control: httpx.AsyncClient,
) -> None:
    for body, field in (({"price_band_pct": -1}, "price_band_pct"),
                        ({"reject_market_symbols": "X"}, "reject_market_symbols"),
                        ({"cancel_refused_ms": 1.5}, "cancel_refused_ms"),
                        ({"rest_protected_market": "yes"}, "rest_protected_market")):
        response = await control.post("/_venue/faults", json=body)
        assert_error(response, 400, "InputException", field)
