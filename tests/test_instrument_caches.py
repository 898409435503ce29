"""One instrument master per broker URL: the accounts on one venue share it, and the order path's
validation and the page's `GET /instruments` read the same one (the service wires one
`InstrumentCaches` into both)."""

from __future__ import annotations

from pathlib import Path

import trio

from actors.instruments import InstrumentCaches
from brokers.kite import KiteBroker, KiteSettings
from tests.fixtures_orders import leg
from tests.fixtures_service import TOKENS, api, open_test_service, venue_control
from tests.fixtures_venue import nifty_symbols


async def test_one_cache_per_broker_url() -> None:
    caches = InstrumentCaches()
    one = KiteBroker(KiteSettings(api_key="k", access_token="a", rest_url="http://venue-a"))
    two = KiteBroker(KiteSettings(api_key="k", access_token="b", rest_url="http://venue-a"))
    other = KiteBroker(KiteSettings(api_key="k", access_token="c", rest_url="http://venue-b"))
    try:
        assert caches.for_broker(one) is caches.for_broker(two)
        assert caches.for_broker(one) is not caches.for_broker(other)
    finally:
        for broker in (one, two, other):
            await broker.aclose()


async def test_the_order_path_fills_the_cache_the_page_reads(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_test_service(tmp_path) as running:
            caches = running.app.deps.instruments
            primary = caches.for_broker(running.actors["primary"].broker)
            assert primary is caches.for_broker(running.actors["secondary"].broker)
            assert primary.loaded("NFO") == []
            async with api(running) as http, venue_control(running) as venue:
                fut, opt = await nifty_symbols(venue)
                done = await http.post("/accounts/primary/batch-orders",
                                       json={"orders": [leg(fut), leg(opt)]})
                assert done.status_code == 200, done.text
            # Validation of the primary's batch loaded NFO into the one shared cache: the
            # secondary's page request reads it without another fetch.
            assert {i.tradingsymbol for i in primary.loaded("NFO")} >= {fut, opt}
            async with api(running, TOKENS["secondary"]) as http:
                page = await http.get("/instruments", params={"q": fut, "exchange": "NFO"})
                assert page.status_code == 200, page.text
                assert [r["tradingsymbol"] for r in page.json()["instruments"]][:1] == [fut]


async def test_the_page_searches_keys_made_once_per_load_of_the_master(tmp_path: Path) -> None:
    """Keystrokes share one search index (symbols and names upper-cased, merged and ordered
    once); a reload of the master makes a new one."""
    with trio.fail_after(30):
        async with open_test_service(tmp_path) as running, api(running) as http:
            caches = running.app.deps.instruments
            cache = caches.for_broker(running.actors["primary"].broker)
            answers = []
            for q in ("n", "ni", "nif", "nifty"):
                page = await http.get("/instruments", params={"q": q, "limit": 5})
                assert page.status_code == 200, page.text
                answers.append([r["tradingsymbol"] for r in page.json()["instruments"]])
            assert answers[3] and answers[3][0].startswith("NIFTY"), answers
            exchanges = ("NFO", "NSE")
            index = caches.search_index([cache], exchanges)
            assert caches.search_index([cache, cache], exchanges) is index  # the 4 keystrokes'
            await cache.load(["NSE"])  # fresh: not reloaded, the same index
            assert caches.search_index([cache], exchanges) is index
            cache.version += 1  # as a reload of an exchange's master does
            assert caches.search_index([cache], exchanges) is not index
