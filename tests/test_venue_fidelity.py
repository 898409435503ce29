"""The venue against Zerodha's published reference responses, and the official client.

The references (zerodha/kiteconnect-mocks, commit c7a8123) stay outside the project: what is
compared is derived from them into tests/fixtures/kite_schema.json. Shapes are compared key by
key: the venue must carry every key the reference always carries, nothing the reference never
has, the same JSON kind per value (numbers as one kind; null is allowed where the reference has
null), and strings in the reference's format where it has one (timestamps, digit-string ids).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import trio
from kiteconnect import KiteConnect
from trio_websocket import open_websocket_url

from tests.fixtures.derive_kite_schema import csv_cell_format, kind, string_format
from tests.fixtures_venue import (
    KITE_SCHEMA,
    NIFTY_CE,
    NIFTY_FUT,
    kite_reference,
    market_form,
    next_order,
    order_form,
    place,
    ticker_url,
)


def assert_shape(actual: dict[str, Any], reference: dict[str, Any],
                 extra: dict[str, Any] | None = None, where: str = "") -> None:
    """`actual` against a derived `reference` shape; `extra`'s keys are allowed too, under its
    own rules (history rows may carry what `GET /orders` rows carry)."""
    fields = {**(extra or {}).get("fields", {}), **reference["fields"]}
    always = set(reference["always"])
    assert always <= set(actual), f"{where}: missing {sorted(always - set(actual))}"
    assert set(actual) <= set(fields), f"{where}: unexpected {sorted(set(actual) - set(fields))}"
    for key, value in actual.items():
        field = fields[key]
        kinds = set(field["kinds"])
        if kinds == {"null"}:
            continue
        assert kind(value) in kinds, f"{where}.{key}: {kind(value)} not in {kinds}"
        formats = set(field.get("formats", ["text"]))
        if isinstance(value, str) and "text" not in formats:
            assert string_format(value) in formats, f"{where}.{key}: {value!r} not in {formats}"
        if isinstance(value, dict) and value and "fields" in field:
            assert_shape(value, field, where=f"{where}.{key}")


ORDERS = kite_reference("orders.json", "data", "[]")


async def test_place_modify_cancel_responses(kite):
    with trio.fail_after(10):
        placed = (await kite.post("/orders/regular", data=order_form())).json()
        assert_shape(placed, kite_reference("order_response.json"), where="order_response")
        order_id = placed["data"]["order_id"]
        modified = (await kite.put(f"/orders/regular/{order_id}", data={"price": 20000.5})).json()
        assert_shape(modified, kite_reference("order_modify.json"), where="order_modify")
        cancelled = (await kite.delete(f"/orders/regular/{order_id}")).json()
        assert_shape(cancelled, kite_reference("order_cancel.json"), where="order_cancel")
        assert modified == cancelled == {"status": "success", "data": {"order_id": order_id}}


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
            assert_shape(order, ORDERS, where="orders")
        await place(kite, order_form(price=20000.05))
        for order_id in ids:
            for row in (await kite.get(f"/orders/{order_id}")).json()["data"]:
                assert_shape(row, kite_reference("order_info.json", "data", "[]"), ORDERS,
                             where="order_info")


async def test_positions_ltp_and_basket_match_reference(kite):
    with trio.fail_after(10):
        await place(kite, market_form())
        await place(kite, market_form(tradingsymbol=NIFTY_CE, transaction_type="SELL"))
        positions = (await kite.get("/portfolio/positions")).json()["data"]
        reference = kite_reference("positions.json", "data")
        assert set(positions) == set(reference["fields"])
        for side in ("net", "day"):
            assert len(positions[side]) == 2
            for row in positions[side]:
                assert_shape(row, reference["fields"][side]["items"], where=f"positions.{side}")
        ltp = (await kite.get("/quote/ltp", params={"i": "NSE:INFY"})).json()
        assert_shape(ltp, kite_reference("ltp.json"), where="ltp")
        legs = [{"exchange": "NFO", "tradingsymbol": s, "transaction_type": "BUY",
                 "variety": "regular", "product": "NRML", "order_type": "MARKET", "quantity": 75}
                for s in (NIFTY_FUT, NIFTY_CE)]
        basket = (await kite.post("/margins/basket", json=legs)).json()["data"]
        reference = kite_reference("basket_margins.json", "data")
        assert set(basket) == set(reference["fields"])
        for key in ("initial", "final", "charges"):
            assert_shape(basket[key], reference["fields"][key], where=f"basket.{key}")
            assert set(basket[key]) == set(reference["fields"][key]["fields"])
        for leg in basket["orders"]:
            assert_shape(leg, reference["fields"]["orders"]["items"], where="basket.orders")


async def test_ticker_frame_matches_postback(venue, kite):
    with trio.fail_after(10):
        async with open_websocket_url(ticker_url(venue.ticker_url)) as ws:
            await place(kite, market_form(tag="pb"))
            for _ in range(2):
                data = await next_order(ws)
                assert_shape(data, kite_reference("postback.json"), ORDERS, where="postback")


async def test_instruments_columns_match_reference(kite):
    with trio.fail_after(10):
        reference = KITE_SCHEMA["instruments_csv"]
        dump = list(csv.reader(io.StringIO((await kite.get("/instruments")).text)))
        assert dump[0] == reference["header"]
        for row in dump[1:]:
            for name, cell in zip(dump[0], row, strict=True):
                assert csv_cell_format(cell) in reference["column_formats"][name], (name, row)
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
