"""Saved baskets (issue 16, item 5) over HTTP, on SQLite and Postgres: save, list, load,
replace, delete, the cap and the name rules, each account's baskets its own, and nothing
ever placed by saving or loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from actors.baskets import MAX_BASKETS, STORE_TIMEOUT_S
from store import BasketRecord, BasketsFull, Store
from tests.fixtures_orders import leg
from tests.fixtures_store import locked_tables
from tests.fixtures_venue import BANKNIFTY_FUT, NIFTY_CE, kite_headers
from tests.fixtures_web import (
    ADMIN_TOKEN,
    TOKENS,
    WebStack,
    assert_error_shape,
    bearer,
    open_web_stack,
)

BASKETS = "/accounts/primary/baskets"
CONDOR = [leg(NIFTY_CE, "SELL"), leg(NIFTY_CE, quantity=150, order_type="LIMIT", price=12.5),
          leg(BANKNIFTY_FUT, "SELL", 35)]


def problems(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    body = assert_error_shape(response)
    assert body["error"] == "invalid_request"
    return [(f["path"], f["rule"]) for f in body["fields"]]


async def venue_orders(stack: WebStack, account: str = "primary") -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.venue.rest_url, timeout=10,
                                 headers=kite_headers(account)) as kite:
        return list((await kite.get("/orders")).json()["data"])


async def test_save_list_load_replace_delete(tmp_path: Path, store_url: str) -> None:
    with trio.fail_after(60):
        async with (open_web_stack(tmp_path, store_url=store_url) as stack,
                    stack.http(TOKENS["primary"]) as http):
            empty = await http.get(BASKETS)
            assert empty.json() == {"account": "primary", "baskets": [],
                                    "max_baskets": MAX_BASKETS}

            saved = await http.put(f"{BASKETS}/Iron condor", json={"orders": CONDOR})
            assert saved.status_code == 200, saved.text
            first = saved.json()
            assert first["name"] == "Iron condor"
            # the legs come back as a batch takes them: only the fields they have
            assert first["orders"][0] == {**CONDOR[0], "validity": "DAY", "variety": "regular"}
            assert first["orders"][1]["price"] == 12.5
            assert "tag" not in first["orders"][0] and "price" not in first["orders"][0]
            assert first["created_at"] == first["updated_at"]

            await http.put(f"{BASKETS}/a straddle", json={"orders": CONDOR[:2]})
            listed = (await http.get(BASKETS)).json()["baskets"]
            assert [(b["name"], b["legs"]) for b in listed] == [
                ("Iron condor", 3), ("a straddle", 2)]  # by name
            assert listed[0]["updated_at"] == first["updated_at"]

            loaded = await http.get(f"{BASKETS}/Iron%20condor")
            assert loaded.status_code == 200
            assert loaded.json() == first

            replaced = (await http.put(f"{BASKETS}/Iron condor",
                                       json={"orders": CONDOR[2:]})).json()
            assert [o["tradingsymbol"] for o in replaced["orders"]] == [BANKNIFTY_FUT]
            assert replaced["created_at"] == first["created_at"]
            assert replaced["updated_at"] > first["updated_at"]
            assert (await http.get(f"{BASKETS}/Iron condor")).json() == replaced

            gone = await http.delete(f"{BASKETS}/Iron condor")
            assert gone.json() == {"account": "primary", "name": "Iron condor", "deleted": True}
            for response in (await http.delete(f"{BASKETS}/Iron condor"),
                             await http.get(f"{BASKETS}/Iron condor")):
                assert response.status_code == 404
                assert assert_error_shape(response)["error"] == "not_found"
            listed = (await http.get(BASKETS)).json()["baskets"]
            assert [b["name"] for b in listed] == ["a straddle"]

            # saving and loading placed nothing
            assert await venue_orders(stack) == []
            assert stack.actors["primary"].orders() == []


async def test_names_bodies_and_the_cap_are_checked(tmp_path: Path, store_url: str) -> None:
    with trio.fail_after(90):
        async with (open_web_stack(tmp_path, store_url=store_url) as stack,
                    stack.http(TOKENS["primary"]) as http):
            body = {"orders": CONDOR[:1]}
            for name, rule in (("x" * 65, "length"), ("tab%09in", "printable"),
                               ("%20padded", "format"), ("padded%20", "format")):
                assert problems(await http.put(f"{BASKETS}/{name}", json=body)) == [
                    ("name", rule)], name
                assert problems(await http.get(f"{BASKETS}/{name}")) == [("name", rule)]
                assert problems(await http.delete(f"{BASKETS}/{name}")) == [("name", rule)]
            assert (await http.put(f"{BASKETS}/{'x' * 64}", json=body)).status_code == 200
            assert (await http.put(f"{BASKETS}/Straddle ₹ 24000", json=body)).status_code == 200

            # the name's problems and the body's, in one answer
            assert problems(await http.put(f"{BASKETS}/%20x", json={
                "orders": [{**CONDOR[0], "tag": "mine", "quantity": "75"}], "execution": "x",
            })) == [("name", "format"), ("execution", "unknown_field"),
                    ("orders[0].tag", "forbidden"), ("orders[0].quantity", "type")]
            assert problems(await http.put(f"{BASKETS}/many", json={"orders": CONDOR * 4})) == [
                ("orders", "count")]
            assert problems(await http.put(f"{BASKETS}/long", json={"orders": [
                {**CONDOR[0], "tradingsymbol": "N" * 65}]})) == [
                ("orders[0].tradingsymbol", "length")]
            assert problems(await http.put(f"{BASKETS}/none", json={"orders": []})) == [
                ("orders", "count")]
            assert problems(await http.put(f"{BASKETS}/no body", json={})) == [
                ("orders", "required")]
            not_json = await http.put(f"{BASKETS}/x", content=b"{",
                                      headers={"Content-Type": "application/json"})
            assert not_json.status_code == 400

            for n in range(MAX_BASKETS - 2):  # two are saved above
                saved = await http.put(f"{BASKETS}/b{n:03}", json=body)
                assert saved.status_code == 200, saved.text
            full = await http.put(f"{BASKETS}/one too many", json=body)
            assert problems(full) == [("name", "max_baskets")]
            assert "at most 100 saved baskets" in full.json()["fields"][0]["message"]
            # at the cap, a name it has is still replaced
            assert (await http.put(f"{BASKETS}/b000", json={"orders": CONDOR})).status_code == 200
            assert len((await http.get(BASKETS)).json()["baskets"]) == MAX_BASKETS
            await http.delete(f"{BASKETS}/b001")
            assert (await http.put(f"{BASKETS}/one too many", json=body)).status_code == 200
            assert await venue_orders(stack) == []


async def test_each_account_keeps_its_own(tmp_path: Path, store_url: str) -> None:
    with trio.fail_after(60):
        async with (open_web_stack(tmp_path, store_url=store_url) as stack,
                    stack.http(TOKENS["primary"]) as primary,
                    stack.http(TOKENS["secondary"]) as secondary,
                    stack.http(ADMIN_TOKEN) as admin):
            await primary.put(f"{BASKETS}/hedge", json={"orders": CONDOR})
            other = "/accounts/secondary/baskets"
            await secondary.put(f"{other}/hedge", json={"orders": CONDOR[:1]})
            for call in (secondary.get(BASKETS), secondary.get(f"{BASKETS}/hedge"),
                         secondary.put(f"{BASKETS}/hedge", json={"orders": CONDOR[:1]}),
                         secondary.delete(f"{BASKETS}/hedge")):
                response = await call
                assert response.status_code == 403
                assert assert_error_shape(response)["error"] == "forbidden"
            assert len((await primary.get(f"{BASKETS}/hedge")).json()["orders"]) == 3
            assert len((await secondary.get(f"{other}/hedge")).json()["orders"]) == 1
            assert len((await admin.get(f"{BASKETS}/hedge")).json()["orders"]) == 3
            async with stack.http() as anonymous:
                assert (await anonymous.get(BASKETS)).status_code == 401
            unknown = await primary.get("/accounts/nobody/baskets", headers=bearer(ADMIN_TOKEN))
            assert unknown.status_code == 404
            await secondary.delete(f"{other}/hedge")
            assert (await primary.get(f"{BASKETS}/hedge")).status_code == 200


async def test_store_keeps_created_at_and_the_cap(store: Store) -> None:
    legs = [{"tradingsymbol": "X", "quantity": 1}]
    first = await store.save_basket(BasketRecord("a", "one", legs), max_baskets=2)
    await store.save_basket(BasketRecord("a", "two", legs), max_baskets=2)
    await store.save_basket(BasketRecord("b", "one", legs * 2), max_baskets=2)
    with pytest.raises(BasketsFull):
        await store.save_basket(BasketRecord("a", "three", legs), max_baskets=2)
    again = await store.save_basket(BasketRecord("a", "one", legs * 3), max_baskets=2)
    assert again.created_at == first.created_at and again.legs == legs * 3
    assert [r.name for r in await store.list_baskets("a")] == ["one", "two"]
    assert (await store.load_basket("b", "one")) is not None
    assert await store.load_basket("a", "three") is None
    assert await store.delete_basket("a", "one") is True
    assert await store.delete_basket("a", "one") is False


async def test_a_store_that_does_not_answer_is_a_503(tmp_path: Path, pg_url: str) -> None:
    """Never a 500, never a hang: a basket call the store holds past its bound answers 503."""
    with trio.fail_after(60):
        async with (open_web_stack(tmp_path, store_url=pg_url) as stack,
                    stack.http(TOKENS["primary"]) as http,
                    locked_tables(pg_url, "saved_baskets")):
            started = trio.current_time()
            response = await http.get(BASKETS)
            assert response.status_code == 503, response.text
            assert assert_error_shape(response)["error"] == "store_unavailable"
            assert trio.current_time() - started < STORE_TIMEOUT_S + 3
