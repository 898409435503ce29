"""The venue against Zerodha's published reference responses, and the official client.

Shapes are compared key by key: the venue must carry every key the reference always carries,
nothing the reference never has, and the same JSON kind per value (numbers as one kind; null is
allowed where the reference has null).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable
from typing import Any

import trio
from kiteconnect import KiteConnect
from trio_websocket import open_websocket_url

from tests.fixtures_venue import (
    FIXTURES,
    NIFTY_CE,
    NIFTY_FUT,
    fixture_json,
    market_form,
    next_order,
    order_form,
    place,
    ticker_url,
)


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__  # str, list, dict


def assert_shape(actual: dict[str, Any], references: Iterable[dict[str, Any]],
                 extra_ok: Iterable[str] = (), where: str = "") -> None:
    references = list(references)
    always = set.intersection(*(set(r) for r in references))
    ever = set.union(*(set(r) for r in references)) | set(extra_ok)
    assert always <= set(actual), f"{where}: missing {sorted(always - set(actual))}"
    assert set(actual) <= ever, f"{where}: unexpected {sorted(set(actual) - ever)}"
    for key, value in actual.items():
        seen = [r[key] for r in references if key in r]
        kinds = {kind(v) for v in seen}
        if not kinds or kinds == {"null"}:
            continue
        assert kind(value) in kinds, f"{where}.{key}: {kind(value)} not in {kinds}"
        if isinstance(value, dict) and value and any(isinstance(v, dict) and v for v in seen):
            assert_shape(value, [v for v in seen if isinstance(v, dict) and v],
                         where=f"{where}.{key}")


ORDER_KEYS = set.union(*(set(o) for o in fixture_json("orders.json")["data"]))


async def test_place_modify_cancel_responses(kite):
    with trio.fail_after(10):
        for name, response in [
            ("order_response.json", await kite.post("/orders/regular", data=order_form())),
        ]:
            body = response.json()
            assert_shape(body, [fixture_json(name)], where=name)
            assert_shape(body["data"], [fixture_json(name)["data"]], where=name)
        order_id = body["data"]["order_id"]
        modified = (await kite.put(f"/orders/regular/{order_id}", data={"price": 20000.5})).json()
        assert_shape(modified["data"], [fixture_json("order_modify.json")["data"]])
        cancelled = (await kite.delete(f"/orders/regular/{order_id}")).json()
        assert_shape(cancelled["data"], [fixture_json("order_cancel.json")["data"]])
        assert modified == cancelled == {"status": "success", "data": {"order_id": order_id}}


def _assert_timestamps(order: dict[str, Any]) -> None:
    for key in ("order_timestamp", "exchange_timestamp", "exchange_update_timestamp"):
        if order.get(key) is not None:
            dt.datetime.strptime(order[key], "%Y-%m-%d %H:%M:%S")


async def test_orders_and_history_match_reference(kite, control):
    with trio.fail_after(10):
        await control.post("/_venue/faults", json={"reject_symbols": ["SBIN"]})
        ids = [
            await place(kite, order_form(tag="fidelity")),
            await place(kite, market_form()),
            await place(kite, order_form(exchange="NSE", tradingsymbol="SBIN", product="CNC",
                                         quantity=1, price=700)),
        ]
        await kite.delete(f"/orders/regular/{ids[0]}")
        orders = (await kite.get("/orders")).json()["data"]
        assert {o["status"] for o in orders} == {"CANCELLED", "COMPLETE", "REJECTED"}
        for order in orders:
            assert_shape(order, fixture_json("orders.json")["data"], where="orders")
            _assert_timestamps(order)
        await place(kite, order_form(price=20000.05))
        for order_id in ids:
            for row in (await kite.get(f"/orders/{order_id}")).json()["data"]:
                assert_shape(row, fixture_json("order_info.json")["data"], extra_ok=ORDER_KEYS,
                             where="order_info")
                _assert_timestamps(row)


async def test_positions_ltp_and_basket_match_reference(kite):
    with trio.fail_after(10):
        await place(kite, market_form())
        await place(kite, market_form(tradingsymbol=NIFTY_CE, transaction_type="SELL"))
        positions = (await kite.get("/portfolio/positions")).json()["data"]
        reference = fixture_json("positions.json")["data"]
        assert set(positions) == set(reference)
        for side in ("net", "day"):
            assert len(positions[side]) == 2
            for row in positions[side]:
                assert_shape(row, reference[side], where=f"positions.{side}")
        ltp = (await kite.get("/quote/ltp", params={"i": "NSE:INFY"})).json()
        assert_shape(ltp["data"]["NSE:INFY"], [fixture_json("ltp.json")["data"]["NSE:INFY"]])
        legs = [{"exchange": "NFO", "tradingsymbol": s, "transaction_type": "BUY",
                 "variety": "regular", "product": "NRML", "order_type": "MARKET", "quantity": 75}
                for s in (NIFTY_FUT, NIFTY_CE)]
        basket = (await kite.post("/margins/basket", json=legs)).json()["data"]
        reference = fixture_json("basket_margins.json")["data"]
        assert set(basket) == set(reference)
        for key in ("initial", "final", "charges"):
            assert_shape(basket[key], [reference[key]], where=f"basket.{key}")
            assert set(basket[key]) == set(reference[key])
        for leg in basket["orders"]:
            assert_shape(leg, reference["orders"], where="basket.orders")


async def test_ticker_frame_matches_postback(venue, kite):
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await place(kite, market_form(tag="pb"))
            for _ in range(2):
                data = await next_order(ws)
                assert_shape(data, [fixture_json("postback.json")], extra_ok=ORDER_KEYS,
                             where="postback")
                _assert_timestamps(data)


async def test_instruments_header_matches_reference(kite):
    with trio.fail_after(10):
        header = (await kite.get("/instruments")).text.splitlines()[0]
        reference = (FIXTURES / "instruments_all.csv").read_text().splitlines()[0]
        assert header == reference
        rows = list(csv.DictReader(io.StringIO((await kite.get("/instruments/NFO")).text)))
        fut = next(r for r in rows if r["tradingsymbol"] == NIFTY_FUT)
        expiry = dt.date.fromisoformat(fut["expiry"])
        assert expiry.weekday() == 1 and (expiry + dt.timedelta(days=7)).month != expiry.month
        assert (fut["lot_size"], fut["tick_size"], fut["segment"]) == ("75", "0.05", "NFO-FUT")


async def test_official_kiteconnect_client(venue, control):
    def session() -> dict[str, Any]:
        kite = KiteConnect(api_key="paper", root=venue.rest_url)
        kite.set_access_token("paper-primary")
        out: dict[str, Any] = {}
        order_id = kite.place_order(
            variety=kite.VARIETY_REGULAR, exchange=kite.EXCHANGE_NFO, tradingsymbol=NIFTY_FUT,
            transaction_type=kite.TRANSACTION_TYPE_BUY, quantity=75, product=kite.PRODUCT_NRML,
            order_type=kite.ORDER_TYPE_LIMIT, price=20000, tag="kiteclient")
        out["modified"] = kite.modify_order(kite.VARIETY_REGULAR, order_id, quantity=150,
                                            price=20000.5)
        out["history"] = kite.order_history(order_id)
        out["cancelled"] = kite.cancel_order(kite.VARIETY_REGULAR, order_id)
        out["market"] = kite.place_order(
            variety="regular", exchange="NFO", tradingsymbol=NIFTY_FUT, transaction_type="BUY",
            quantity=75, product="NRML", order_type="MARKET", market_protection=-1)
        out["order_id"] = order_id
        out["orders"] = kite.orders()
        out["positions"] = kite.positions()
        out["ltp"] = kite.ltp(f"NFO:{NIFTY_FUT}")
        out["instruments"] = kite.instruments("NFO")
        out["margins"] = kite.margins()
        try:
            kite.place_order(variety="regular", exchange="NFO", tradingsymbol=NIFTY_FUT,
                             transaction_type="BUY", quantity=7, product="NRML",
                             order_type="MARKET", market_protection=-1)
        except Exception as exc:  # the client raises Kite's own exception classes
            out["error"] = exc
        return out

    with trio.fail_after(20):
        out = await trio.to_thread.run_sync(session)
    order_id = out["order_id"]
    assert out["modified"] == out["cancelled"] == order_id
    assert [h["status"] for h in out["history"]][-1] == "OPEN"
    assert isinstance(out["history"][0]["order_timestamp"], dt.datetime)  # parsed by the client
    assert [o["status"] for o in out["orders"]] == ["CANCELLED", "COMPLETE"]
    assert out["positions"]["net"][0]["quantity"] == 75
    assert out["ltp"][f"NFO:{NIFTY_FUT}"]["last_price"] == 24000.0
    instruments = {i["tradingsymbol"]: i for i in out["instruments"]}
    assert instruments[NIFTY_FUT]["lot_size"] == 75
    assert isinstance(instruments[NIFTY_FUT]["expiry"], dt.date)
    assert out["margins"]["equity"]["utilised"]["debits"] > 0
    assert type(out["error"]).__name__ == "InputException"
    assert out["error"].code == 400
