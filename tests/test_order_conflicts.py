"""An update whose order id the book knows but whose fixed fields differ is another order: not
applied, logged, counted in `orderdesk_order_conflicts_total` and named in the account's health
entry. Through the whole service; the book holds a stored BANKNIFTY SELL under the id that the
venue (in the test's nursery) gives a NIFTY BUY, as a venue that reused an id would.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
import trio

from brokers.paper import VenueAddress
from brokers.paper.config import IST
from store import open_store
from supervision.service import Running
from tests.fixtures_service import api, open_test_service, scrape_metrics
from tests.fixtures_venue import BANKNIFTY_FUT, kite_http, latest, market_form, place


async def conflicts_seen(running: Running) -> None:
    entry = running.health.get("account:primary")
    assert entry is not None
    actor = running.actors["primary"]
    # the actor reports its upstream state into the entry: a change of either wakes the wait
    await entry.changes.until(
        lambda: entry.order_conflicts and actor.upstream.state == "connected")


async def test_a_conflicting_update_is_refused_counted_and_shown_in_health(
    tmp_path: Path, venue: VenueAddress, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="actors.account")
    database = f"sqlite:///{tmp_path}/od.db"
    with trio.fail_after(30):
        async with kite_http(venue) as kite:
            order_id = await place(kite, market_form())  # NIFTY BUY, COMPLETE at the venue
            at_venue = await latest(kite, order_id)
        stored = {**at_venue, "tradingsymbol": BANKNIFTY_FUT, "transaction_type": "SELL",
                  "quantity": 35, "filled_quantity": 35, "average_price": 52000.0,
                  "order_timestamp": f"{dt.datetime.now(IST):%Y-%m-%d} 09:15:00"}
        async with open_store(database) as store:
            await store.append_events("primary", [stored])

        primary = f'rest_url = "{venue.rest_url}"\nticker_url = "{venue.ticker_url}"'
        async with open_test_service(tmp_path, database=database,
                                     account_toml={"primary": primary}) as running:
            await conflicts_seen(running)
            async with api(running) as http:
                orders = (await http.get("/accounts/primary/orders")).json()["orders"]
            metrics = await scrape_metrics(running)
            entry = running.health.get("account:primary")

    assert entry is not None
    assert entry.last_conflict is not None and order_id in entry.last_conflict
    for field in ("tradingsymbol", "transaction_type", "order_timestamp"):
        assert field in entry.last_conflict, entry.last_conflict
    assert "\n" not in entry.last_conflict
    book = {o["order_id"]: o for o in orders}[order_id]
    assert (book["tradingsymbol"], book["transaction_type"], book["quantity"]) == (
        BANKNIFTY_FUT, "SELL", 35), book  # not applied
    assert f'orderdesk_order_conflicts_total{{account="primary"}} {entry.order_conflicts:.1f}' \
        in metrics
    assert any(order_id in r.getMessage() for r in caplog.records), caplog.text
