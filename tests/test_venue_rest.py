"""The paper venue's Kite REST API: happy paths, validation, matching, faults, limits."""

from __future__ import annotations

import datetime as dt
from typing import Any

import attrs
import httpx
import pytest
import trio

from brokers.paper.config import IST
from tests.fixtures_venue import (
    NIFTY_CE,
    NIFTY_FUT,
    assert_error,
    history,
    kite_http,
    kite_instruments_csv,
    latest,
    market_form,
    order_form,
    place,
    start_venue,
)


async def test_place_limit_rests_and_fills_when_price_crosses(kite, control):
    with trio.fail_after(10):
        order_id = await place(kite, order_form(price=23900))
        assert len(order_id) == 15 and order_id.isdigit()
        rows = await history(kite, order_id)
        assert [r["status"] for r in rows] == [
            "PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING", "OPEN"]
        assert rows[-1]["pending_quantity"] == 75 and rows[-1]["exchange_order_id"]
        response = await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 23850})
        assert response.status_code == 200
        done = await latest(kite, order_id)
        assert done["status"] == "COMPLETE"
        assert done["filled_quantity"] == 75 and done["pending_quantity"] == 0
        assert done["average_price"] == 23900  # a resting limit fills at its price


async def test_market_order_fills_at_ltp_and_builds_position(kite, control):
    with trio.fail_after(10):
        await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 24010.5})
        buy = await place(kite, market_form(quantity=150))
        assert (await latest(kite, buy))["average_price"] == 24010.5
        await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 24020.0})
        await place(kite, market_form(transaction_type="SELL", quantity=75))
        body = (await kite.get("/portfolio/positions")).json()["data"]
        (row,) = body["net"]
        assert body["day"] == body["net"]
        assert row["tradingsymbol"] == NIFTY_FUT and row["product"] == "NRML"
        assert row["quantity"] == 75
        assert (row["buy_quantity"], row["sell_quantity"]) == (150, 75)
        assert row["buy_value"] == pytest.approx(150 * 24010.5)
        assert row["sell_value"] == pytest.approx(75 * 24020.0)
        assert row["average_price"] == 24010.5
        assert row["last_price"] == 24020.0


async def test_stop_loss_waits_for_trigger(kite, control):
    with trio.fail_after(10):
        order_id = await place(kite, order_form(order_type="SL", price=24105, trigger_price=24100))
        assert (await latest(kite, order_id))["status"] == "TRIGGER PENDING"
        await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 24050})
        assert (await latest(kite, order_id))["status"] == "TRIGGER PENDING"
        await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": 24100})
        statuses = [r["status"] for r in await history(kite, order_id)]
        assert statuses[-3:] == ["TRIGGER PENDING", "OPEN", "COMPLETE"]


async def test_modify_then_cancel(kite):
    with trio.fail_after(10):
        order_id = await place(kite, order_form(price=23000))
        response = await kite.put(f"/orders/regular/{order_id}",
                                  data={"quantity": 150, "price": 23100.05})
        assert response.json() == {"status": "success", "data": {"order_id": order_id}}
        rows = await history(kite, order_id)
        assert [r["status"] for r in rows[-4:]] == [
            "MODIFY VALIDATION PENDING", "MODIFY PENDING", "MODIFIED", "OPEN"]
        assert rows[-1]["quantity"] == 150 and rows[-1]["price"] == 23100.05
        assert rows[-1]["modified"] is True
        response = await kite.delete(f"/orders/regular/{order_id}")
        assert response.json()["data"]["order_id"] == order_id
        rows = await history(kite, order_id)
        assert [r["status"] for r in rows[-2:]] == ["CANCEL PENDING", "CANCELLED"]
        assert rows[-1]["cancelled_quantity"] == 150
        for verb in ("put", "delete"):
            kwargs: dict[str, Any] = {"data": {"price": 23000}} if verb == "put" else {}
            again = await getattr(kite, verb)(f"/orders/regular/{order_id}", **kwargs)
            assert_error(again, 400, "InputException", "cancelled")


async def test_cannot_cancel_completed_order(kite):
    with trio.fail_after(10):
        order_id = await place(kite, market_form())
        response = await kite.delete(f"/orders/regular/{order_id}")
        assert_error(response, 400, "InputException", "complete")


async def test_orders_list_and_unknown_order(kite):
    with trio.fail_after(10):
        first = await place(kite, order_form())
        second = await place(kite, market_form())
        orders = (await kite.get("/orders")).json()["data"]
        assert [o["order_id"] for o in orders] == [first, second]
        assert [o["status"] for o in orders] == ["OPEN", "COMPLETE"]
        assert_error(await kite.get("/orders/999999999999999"), 400, "InputException")


async def test_accounts_do_not_see_each_other(venue, kite):
    with trio.fail_after(10):
        order_id = await place(kite, order_form())
        async with kite_http(venue, "secondary") as other:
            assert (await other.get("/orders")).json()["data"] == []
            assert_error(await other.get(f"/orders/{order_id}"), 400, "InputException")
            assert_error(await other.delete(f"/orders/regular/{order_id}"), 400,
                         "InputException")


async def test_insufficient_funds_creates_a_rejected_order(kite):
    with trio.fail_after(10):
        form = order_form(exchange="NSE", tradingsymbol="SBIN", quantity=20000, product="CNC",
                          order_type="MARKET", price=None, market_protection=-1)
        order_id = await place(kite, form)
        order = await latest(kite, order_id)
        assert order["status"] == "REJECTED"
        assert order["status_message"].startswith("Insufficient funds. Required margin is ")
        assert "but available margin is 10000000.00" in order["status_message"]
        assert order["status_message_raw"].startswith("RMS:Margin Exceeds")
        assert order["exchange_order_id"] is None


async def test_ltp_quotes(kite, control):
    with trio.fail_after(10):
        await control.post("/_venue/ltp", json={"NSE:INFY": 1074.35})
        response = await kite.get("/quote/ltp", params=[("i", "NSE:INFY"), ("i", "NSE:NOPE")])
        data = response.json()["data"]
        assert data == {"NSE:INFY": {"instrument_token": 408065, "last_price": 1074.35}}
        assert_error(await kite.get("/quote/ltp"), 400, "InputException")


async def test_margins_follow_positions(kite):
    with trio.fail_after(10):
        before = (await kite.get("/user/margins")).json()["data"]["equity"]
        assert before["net"] == 10_000_000
        await place(kite, market_form())
        after = (await kite.get("/user/margins/equity")).json()["data"]
        assert after["utilised"]["debits"] == pytest.approx(0.12 * 75 * 24000)
        assert after["net"] == pytest.approx(10_000_000 - 0.12 * 75 * 24000)


async def test_basket_margins_give_hedge_benefit(kite):
    legs = [
        {"exchange": "NFO", "tradingsymbol": NIFTY_FUT, "transaction_type": "SELL",
         "variety": "regular", "product": "NRML", "order_type": "MARKET", "quantity": 75},
        {"exchange": "NFO", "tradingsymbol": NIFTY_CE, "transaction_type": "BUY",
         "variety": "regular", "product": "NRML", "order_type": "MARKET", "quantity": 75},
    ]
    with trio.fail_after(10):
        response = await kite.post("/margins/basket", params={"consider_positions": "true"},
                                   json=legs)
        data = response.json()["data"]
        assert [o["tradingsymbol"] for o in data["orders"]] == [NIFTY_FUT, NIFTY_CE]
        assert data["orders"][0]["total"] == pytest.approx(0.12 * 75 * 24000)
        assert data["final"]["total"] < data["initial"]["total"]
        single = await kite.post("/margins/basket", json=legs[:1])
        assert single.json()["data"]["final"]["total"] == pytest.approx(0.12 * 75 * 24000)
        assert_error(await kite.post("/margins/basket", json={"not": "a list"}), 400,
                     "InputException")
        assert_error(await kite.post("/margins/basket", content=b"{oops"), 400,
                     "InputException")


async def test_instruments_csv(kite):
    with trio.fail_after(10):
        response = await kite.get("/instruments/NFO")
        assert response.headers["content-type"].startswith("text/csv")
        lines = response.text.splitlines()
        assert lines[0].split(",")[2] == "tradingsymbol"
        assert all(line.endswith(",NFO") for line in lines[1:])
        every = (await kite.get("/instruments")).text.splitlines()
        assert len(every) == len(lines) + 10  # ten NSE equities


@attrs.frozen
class Invalid:
    name: str
    form: dict[str, Any]
    message: str = ""


INVALID = [
    Invalid("unknown instrument", order_form(tradingsymbol="NIFTY99JANFUT"), "does not exist"),
    Invalid("bad exchange", order_form(exchange="XYZ"), "exchange"),
    Invalid("bad transaction_type", order_form(transaction_type="HOLD"), "transaction_type"),
    Invalid("bad order_type", order_form(order_type="STOP"), "order_type"),
    Invalid("bad product", order_form(product="FOO"), "product"),
    Invalid("CNC on NFO", order_form(product="CNC"), "product"),
    Invalid("bad validity", order_form(validity="GTC"), "validity"),
    Invalid("body variety differs", order_form(variety="amo"), "variety"),
    Invalid("missing symbol", order_form(tradingsymbol=None), "tradingsymbol"),
    Invalid("missing quantity", order_form(quantity=None), "quantity"),
    Invalid("not a lot multiple", order_form(quantity=50), "lot size"),
    Invalid("zero quantity", order_form(quantity=0), "quantity"),
    Invalid("negative quantity", order_form(quantity=-75), "quantity"),
    Invalid("text quantity", order_form(quantity="abc"), "quantity"),
    Invalid("huge float quantity", order_form(quantity="1e308"), "quantity"),
    Invalid("huge int quantity", order_form(quantity=10**30), "quantity"),
    Invalid("NaN quantity", order_form(quantity="NaN"), "quantity"),
    Invalid("NaN price", order_form(price="NaN"), "price"),
    Invalid("huge price", order_form(price=1e308), "price"),
    Invalid("negative price", order_form(price=-5), "price"),
    Invalid("above freeze", order_form(quantity=1875), "freeze"),
    Invalid("LIMIT without price", order_form(price=None), "price"),
    Invalid("SL without trigger", order_form(order_type="SL"), "trigger_price"),
    Invalid("SL-M without trigger", market_form(order_type="SL-M"), "trigger_price"),
    Invalid("SL trigger above buy limit",
            order_form(order_type="SL", price=24000, trigger_price=24010), "trigger"),
    Invalid("price off tick", order_form(price=20000.03), "tick size"),
    Invalid("trigger off tick", order_form(order_type="SL", price=24100, trigger_price=24099.99),
            "tick size"),
    Invalid("tag too long", order_form(tag="x" * 21), "tag"),
    Invalid("MARKET without protection", market_form(market_protection=None), "protection"),
    Invalid("MARKET with protection 0", market_form(market_protection=0), "protection"),
    Invalid("protection above 100", market_form(market_protection=101), "market_protection"),
    Invalid("SL-M without protection",
            market_form(order_type="SL-M", trigger_price=24100, market_protection=None),
            "protection"),
]


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.name)
async def test_invalid_orders_are_refused(kite, case: Invalid):
    with trio.fail_after(10):
        response = await kite.post("/orders/regular", data=case.form)
        assert_error(response, 400, "InputException", case.message)
        assert (await kite.get("/orders")).json()["data"] == []


async def test_unsupported_variety_in_path(kite):
    with trio.fail_after(10):
        assert_error(await kite.post("/orders/bogus", data=order_form(variety=None)), 400,
                     "InputException", "variety")
        assert_error(await kite.post("/orders/amo", data=order_form(variety=None)), 400,
                     "InputException", "regular")


async def test_market_protection_accepted_values_and_switch(kite, nursery):
    with trio.fail_after(10):
        for value in (-1, 1, 100):
            await place(kite, market_form(market_protection=value))
        address = await start_venue(nursery, require_market_protection=False)
        async with kite_http(address) as relaxed:
            order_id = await place(relaxed, market_form(market_protection=None))
            assert (await latest(relaxed, order_id))["status"] == "COMPLETE"


async def test_tag_of_twenty_characters_is_kept(kite):
    with trio.fail_after(10):
        order_id = await place(kite, order_form(tag="t" * 20))
        order = await latest(kite, order_id)
        assert order["tag"] == "t" * 20 and order["tags"] == ["t" * 20]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Kite-Version": "3"},
        {"X-Kite-Version": "3", "Authorization": "token paper:wrong"},
        {"X-Kite-Version": "3", "Authorization": "token other:paper-primary"},
        {"X-Kite-Version": "3", "Authorization": "token paper:paper-nobody"},
        {"Authorization": "token paper:paper-primary"},
    ],
    ids=["none", "no-auth", "wrong-token", "wrong-key", "unknown-account", "no-version"],
)
async def test_bad_credentials_are_token_exceptions(venue, headers):
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=venue.rest_url, headers=headers) as client:
            for method, path in (("GET", "/orders"), ("POST", "/orders/regular"),
                                 ("GET", "/portfolio/positions")):
                response = await client.request(method, path)
                assert_error(response, 403, "TokenException")


async def test_garbage_gets_envelopes_and_venue_keeps_serving(kite, control):
    with trio.fail_after(10):
        assert_error(await kite.get("/no/such/path"), 404, "GeneralException")
        assert_error(await kite.patch("/orders"), 405, "GeneralException")
        assert_error(await kite.post("/orders/regular", json=market_form()), 400,
                     "InputException")
        assert_error(await kite.post("/orders/regular", content=b"\xff\xfe\x00garbage",
                                     headers={"Content-Type": "application/octet-stream"}),
                     400, "InputException")
        assert_error(await kite.post("/orders/regular", data={}), 400, "InputException")
        for path in ("/_venue/ltp", "/_venue/faults", "/_venue/session"):
            assert_error(await control.post(path, content=b"{not json"), 400, "InputException")
            assert_error(await control.post(path, json=[1, 2]), 400, "InputException")
        assert_error(await control.post("/_venue/ltp", json={f"NFO:{NIFTY_FUT}": "NaN"}), 400,
                     "InputException")
        assert_error(await control.post("/_venue/ltp", json={"NFO:NOPE": 1}), 400,
                     "InputException")
        assert_error(await control.post("/_venue/faults", json={"latency_ms": -1}), 400,
                     "InputException")
        assert_error(await control.post("/_venue/faults", json={"bogus": 1}), 400,
                     "InputException")
        assert_error(await control.post("/_venue/accounts/nobody/expire"), 404,
                     "GeneralException")
        order_id = await place(kite, market_form())
        assert (await latest(kite, order_id))["status"] == "COMPLETE"


async def test_session_closed_and_hours(kite, control):
    with trio.fail_after(10):
        response = await control.post("/_venue/session", json={"closed": True})
        assert response.json()["data"]["closed"] is True
        assert_error(await kite.post("/orders/regular", data=order_form()), 400,
                     "InputException", "Markets are closed right now")
        away = (dt.datetime.now(IST) + dt.timedelta(hours=12)).strftime("%H:%M")
        await control.post("/_venue/session", json={"open": away, "close": away})
        assert_error(await kite.post("/orders/regular", data=order_form()), 400,
                     "InputException", "Markets are closed")
        await control.post("/_venue/session", json={"open": "00:00", "close": "23:59:59"})
        await place(kite, order_form())


async def test_rate_limit(nursery):
    with trio.fail_after(10):
        address = await start_venue(nursery, rate_limit_per_s=3)
        async with kite_http(address) as kite:
            codes = [(await kite.post("/orders/regular", data=order_form())).status_code
                     for _ in range(4)]
            assert codes[:3] == [200, 200, 200]
            response = await kite.post("/orders/regular", data=order_form())
            assert_error(response, 429, "NetworkException", "Too many requests")
            assert codes[3] == 429
            assert len((await kite.get("/orders")).json()["data"]) == 3


async def test_fail_nth_order_creates_nothing(kite, control):
    with trio.fail_after(10):
        await control.post("/_venue/faults", json={"fail_nth_order": 2})
        await place(kite, order_form())
        assert_error(await kite.post("/orders/regular", data=order_form()), 500,
                     "GeneralException", "no order was created")
        assert len((await kite.get("/orders")).json()["data"]) == 1
        await place(kite, order_form())
        assert (await control.get("/_venue/faults")).json()["data"]["fail_nth_order"] == 0


async def test_latency_after_acceptance(kite, control, venue):
    with trio.fail_after(10):
        await control.post("/_venue/faults", json={"latency_ms": 500})
        async with kite_http(venue) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post("/orders/regular", data=order_form(), timeout=0.1)
        await control.delete("/_venue/faults")
        orders = (await kite.get("/orders")).json()["data"]
        assert [o["status"] for o in orders] == ["OPEN"]


async def test_reject_symbols(kite, control):
    with trio.fail_after(10):
        response = await control.post("/_venue/faults", json={"reject_symbols": [NIFTY_FUT]})
        assert response.json()["data"]["reject_symbols"] == [NIFTY_FUT]
        order_id = await place(kite, market_form())
        order = await latest(kite, order_id)
        assert order["status"] == "REJECTED" and "reject_symbols" in order["status_message"]
        await control.delete("/_venue/faults")
        assert (await latest(kite, await place(kite, market_form())))["status"] == "COMPLETE"


async def test_partial_fill_then_fill_remainder(kite, control):
    with trio.fail_after(10):
        await control.post("/_venue/faults", json={"partial_fill_ratio": 0.5})
        order_id = await place(kite, market_form(quantity=300))
        order = await latest(kite, order_id)
        assert (order["status"], order["filled_quantity"], order["pending_quantity"]) == (
            "OPEN", 150, 150)
        response = await control.post(f"/_venue/fill/{order_id}")
        assert response.json()["data"]["status"] == "COMPLETE"
        assert (await latest(kite, order_id))["filled_quantity"] == 300
        # the remainder also fills at the next price step
        second = await place(kite, market_form(quantity=150))
        assert (await latest(kite, second))["filled_quantity"] == 75
        await control.post("/_venue/step", json={"steps": 1})
        assert (await latest(kite, second))["status"] == "COMPLETE"


async def test_reset_clears_state(kite, control):
    with trio.fail_after(10):
        await place(kite, market_form())
        await control.post("/_venue/faults", json={"latency_ms": 10})
        await control.post("/_venue/reset")
        assert (await kite.get("/orders")).json()["data"] == []
        assert (await kite.get("/portfolio/positions")).json()["data"]["net"] == []
        assert (await control.get("/_venue/faults")).json()["data"]["latency_ms"] == 0


async def test_expired_token_and_new_token(venue, kite, control):
    with trio.fail_after(10):
        await control.post("/_venue/accounts/primary/expire")
        assert_error(await kite.get("/orders"), 403, "TokenException")
        response = await control.post("/_venue/accounts/primary/token")
        token = response.json()["data"]["access_token"]
        assert token == "paper-primary-1"
        async with kite_http(venue, token=token) as renewed:
            assert (await renewed.get("/orders")).status_code == 200
        assert_error(await kite.get("/orders"), 403, "TokenException")


async def test_csv_master_from_a_kite_dump(nursery, tmp_path):
    dump = tmp_path / "instruments.csv"
    dump.write_text(kite_instruments_csv())
    with trio.fail_after(10):
        address = await start_venue(nursery, instruments_csv=str(dump))
        async with kite_http(address) as kite:
            lines = (await kite.get("/instruments")).text.splitlines()
            assert lines == kite_instruments_csv().splitlines()
            order_id = await place(kite, order_form(
                exchange="NFO", tradingsymbol="BANKNIFTY18JAN23500CE", quantity=40, price=1.0))
            assert (await latest(kite, order_id))["status"] == "OPEN"
            assert_error(await kite.post("/orders/regular", data=order_form(
                exchange="NFO", tradingsymbol="BANKNIFTY18JAN23500CE", quantity=30, price=1.0)),
                400, "InputException", "lot size")
