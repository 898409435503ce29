"""The venue's price scan and a placement's margin look at working orders only: a day's
finished orders cost nothing on each price tick or placement; a listing encodes only what
changed (issue 17)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from brokers.paper import VenueConfig
from brokers.paper.book import Order
from brokers.paper.engine import Engine
from brokers.paper.faults import Faults
from brokers.paper.instruments import builtin_master
from brokers.paper.orderform import OrderRequest


def _limit(side: str, price: float) -> OrderRequest:
    return OrderRequest(variety="regular", exchange="NSE", tradingsymbol="SBIN",
                        transaction_type=side, order_type="LIMIT", quantity=1, product="CNC",
                        price=price)


async def test_price_events_scan_working_orders_only() -> None:
    master = builtin_master(dt.date(2026, 12, 1), {})
    engine = Engine(VenueConfig(), master, Faults(), lambda *_: None)
    sbin = engine.instrument("NSE", "SBIN")
    ltp = engine.ltp(sbin)
    for n in range(300):  # marketable: each completes at placement
        engine.place("A1", _limit("BUY" if n % 2 else "SELL", ltp * (1.5 if n % 2 else 0.5)))
    resting = engine.place("A1", _limit("BUY", round(ltp * 0.5, 1)))
    assert engine.price_scan_size == 1

    looked_at: list[str] = []
    match_all = engine._match_all

    def counting(orders):  # a spy on what the venue's own scan is given, not a stand-in
        orders = list(orders)
        looked_at.extend(o.order_id for o in orders)
        match_all(orders)

    engine._match_all = counting  # type: ignore[method-assign]
    engine.step_prices()
    assert looked_at == [resting]
    engine.set_prices({sbin: ltp * 0.4})  # through the limit: it fills
    assert engine.order("A1", resting).status == "COMPLETE"
    assert engine.price_scan_size == 0
    looked_at.clear()
    engine.step_prices()
    assert looked_at == []
    assert len(engine.orders("A1")) == 301


async def test_a_placement_margins_working_orders_and_a_listing_encodes_changes_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A day's finished orders cost a placement's margin nothing, and a listing encodes only
    the orders that changed since the last one (it is the whole day's orders each time)."""
    master = builtin_master(dt.date(2026, 12, 1), {})
    engine = Engine(VenueConfig(), master, Faults(), lambda *_: None)
    sbin = engine.instrument("NSE", "SBIN")
    ltp = engine.ltp(sbin)
    for n in range(300):
        engine.place("A1", _limit("BUY" if n % 2 else "SELL", ltp * (1.5 if n % 2 else 0.5)))
    resting = engine.place("A1", _limit("BUY", round(ltp * 0.5, 1)))
    engine.place("A2", _limit("BUY", ltp * 1.5))

    assert engine.margining.scan_size == 1  # the resting order, of 302
    engine.place("A1", _limit("SELL", round(ltp * 1.5, 1)))
    assert engine.margining.scan_size == 2

    encoded: list[str] = []
    to_kite = Order.to_kite

    def encoding(self: Order, status: str | None = None) -> dict:
        encoded.append(self.order_id)
        return to_kite(self, status)

    first = json.loads(engine.listing.json("A1"))
    assert first == [o.to_kite() for o in engine.orders("A1")] and len(first) == 302
    monkeypatch.setattr(Order, "to_kite", encoding)
    assert json.loads(engine.listing.json("A1")) == first
    assert encoded == []  # nothing changed: nothing encoded again
    engine.cancel("A1", resting)
    listed = {row["order_id"]: row for row in json.loads(engine.listing.json("A1"))}
    assert listed[resting]["status"] == "CANCELLED" and encoded.count(resting) >= 1
    assert set(encoded) == {resting}


async def test_a_venue_without_a_state_file_keeps_no_change_list() -> None:
    """Nothing takes the changes of a venue kept in memory: no id per order is kept for it.
    A keeper's first take is followed by a whole snapshot; from then on changes are kept."""
    master = builtin_master(dt.date(2026, 12, 1), {})
    engine = Engine(VenueConfig(), master, Faults(), lambda *_: None)
    ltp = engine.ltp(engine.instrument("NSE", "SBIN"))
    for _ in range(50):
        engine.place("A1", _limit("BUY", ltp * 1.5))
    first = engine.take_changes()
    assert first.orders == [] and first.positions == [] and first.version == engine.version
    placed = engine.place("A1", _limit("BUY", ltp * 1.5))
    assert [o.order_id for o in engine.take_changes().orders] == [placed]
