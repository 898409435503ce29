"""Positions and live P&L: Kite's formula, fills counted once around a delayed positions fetch,
ticks moving the P&L end to end, the latest-only throttle, resubscription after a reconnect."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import trio

from actors.account import LATEST, AccountActor, ActorConfig, OrderBook, Subscription
from actors.account.live_positions import LivePositions, TokenRefs
from actors.account.position_book import PositionBook
from actors.account.positions import PositionTotals, position_view, report_of
from actors.account.subscribers import SubscriberSet
from brokers.base import OrderRequest, Position
from brokers.kite import KiteBroker, KiteSettings
from brokers.paper import VenueAddress
from store import Store, open_store

FUT = "NIFTY26DECFUT"
FAST = ActorConfig(reconnect_initial_s=0.05, reconnect_max_s=0.2, reconnect_jitter_s=0.01,
                   reconcile_interval_s=0.2, positions_max_rate_hz=50)
KEY = ("NFO", FUT, "NRML")


# -- the arithmetic ------------------------------------------------------------------------


def test_kite_formula_with_the_broker_multiplier() -> None:
    totals = PositionTotals(buy_quantity=30, buy_value=30 * 100.0 * 10, sell_quantity=10,
                            sell_value=10 * 110.0 * 10)
    view = position_view(KEY, totals, instrument_token=2, multiplier=10, close_price=0,
                         ltp=120.0)
    assert view.quantity == 20
    assert view.average_price == 100.0
    assert view.pnl == (11_000 - 30_000) + 20 * 120.0 * 10  # 5,000
    assert view.unrealised == 20 * (120 - 100) * 10
    assert view.realised == view.pnl - view.unrealised == 1_000


def test_no_price_is_unknown_pnl_never_zero() -> None:
    totals = PositionTotals(sell_quantity=75, sell_value=75 * 200.0)
    view = position_view(KEY, totals, instrument_token=2, multiplier=1, close_price=0, ltp=None)
    assert view.quantity == -75 and view.average_price == 200.0
    assert view.pnl is None and view.unrealised is None and view.realised == 0
    report = report_of("a", [view])
    assert report.total_pnl is None and not report.ltp_available


def test_overnight_position_marked_from_close_price() -> None:
    book = PositionBook()
    carried = Position(FUT, "NFO", "NRML", 75, instrument_token=2, multiplier=1,
                       close_price=100.0, overnight_quantity=75, buy_quantity=75,
                       buy_value=7_500.0, day_buy_quantity=0, day_buy_value=0,
                       day_sell_quantity=0, day_sell_value=0)
    book.reconcile([carried], [], fills_stable=True, account="a")
    (view,) = book.views([])
    assert view.quantity == 75 and view.buy_value == 7_500 and view.pnl is None
    book.set_ltp(2, 104.0)
    (view,) = book.views([])
    assert view.pnl == 75 * 4.0  # today's move only: from the close, not the entry price


def _fill(order_id: str, side: str, filled: int, price: float) -> dict[str, Any]:
    return {"order_id": order_id, "exchange": "NFO", "tradingsymbol": FUT, "product": "NRML",
            "transaction_type": side, "filled_quantity": filled, "average_price": price,
            "instrument_token": 2, "status": "COMPLETE"}


def test_a_disagreement_found_twice_is_the_brokers_side_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = PositionBook()
    orders = [_fill("1", "BUY", 75, 100.0)]
    broker = Position(FUT, "NFO", "NRML", 150, instrument_token=2, buy_quantity=150,
                      buy_value=15_000.0, day_buy_quantity=150, day_buy_value=15_000.0,
                      day_sell_quantity=0, day_sell_value=0.0)
    book.reconcile([broker], orders, fills_stable=False, account="a")  # fills moved: no verdict
    assert book.views(orders)[0].quantity == 75
    book.reconcile([broker], orders, fills_stable=True, account="a")
    assert book.views(orders)[0].quantity == 75  # maybe a fill still on its way: not yet
    assert "disagrees" not in caplog.text
    book.reconcile([broker], orders, fills_stable=True, account="a")  # the same again
    assert book.views(orders)[0].quantity == 150
    assert "disagrees with the broker" in caplog.text


def test_token_refs_subscribe_once_per_instrument() -> None:
    refs = TokenRefs()
    assert refs.update("positions", {11, 12})
    assert not refs.update("orders", {12})  # already wanted: no new subscription
    assert refs.count(12) == 2
    assert not refs.update("positions", {11})  # 12 still wanted by a working order
    assert refs.update("orders", set())  # now 12 goes
    assert refs.wanted() == {11}


def test_a_slow_subscriber_keeps_the_latest_only() -> None:
    sub = Subscription("a", [], capacity=4, positions=True)
    for n in range(100):
        sub.set_latest(json.dumps({"type": "positions", "n": n}))
    assert sub.depth() == 1  # one wake-up, whatever the rate
    assert sub.receive.receive_nowait() == LATEST
    assert json.loads(sub.take_latest() or "")["n"] == 99
    for n in range(10):  # a full queue never closes it for positions
        sub.offer(f'{{"n":{n}}}') if n < 4 else sub.set_latest('{"type":"positions"}')
    assert sub.closed_reason is None


# -- the actor against the venue -------------------------------------------------------------


@pytest.fixture
async def sqlite_store(sqlite_url: str) -> AsyncIterator[Store]:
    async with open_store(sqlite_url) as store:
        yield store


@pytest.fixture
async def broker(venue: VenueAddress) -> AsyncIterator[KiteBroker]:
    settings = KiteSettings("paper", "paper-primary", venue.rest_url, venue.ticker_url,
                            stall_timeout_s=2, timeout_s=5)
    b = KiteBroker(settings)
    try:
        yield b
    finally:
        await b.aclose()


def market(side: str = "BUY", quantity: int = 75) -> OrderRequest:
    return OrderRequest(FUT, "NFO", side, "MARKET", quantity, "NRML", market_protection=-1)


async def positions_of(sub: Subscription) -> AsyncIterator[dict[str, Any]]:
    """The `positions` messages a subscriber gets, as its websocket sender would read them."""
    for text in sub.initial:
        if json.loads(text)["type"] == "positions":
            yield json.loads(text)
    async for text in sub.receive:
        if text == LATEST:
            text = sub.take_latest() or "{}"
        message = json.loads(text)
        if message.get("type") == "positions":
            yield message


async def until(stream: AsyncIterator[dict[str, Any]],
                predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async for message in stream:
        if predicate(message):
            return message
    raise AssertionError("subscription ended")


def held(message: dict[str, Any]) -> dict[str, Any] | None:
    return next((p for p in message["positions"] if p["tradingsymbol"] == FUT), None)


async def test_fills_counted_once_around_a_delayed_positions_fetch(
    broker: KiteBroker, sqlite_store: Store, control: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            actor = AccountActor("primary", broker, sqlite_store, FAST)
            await nursery.start(actor.run)
            stream = positions_of(actor.subscribe(positions=True))
            await until(stream, lambda m: m["positions"] == [])
            first = await broker.place(market())
            await until(stream, lambda m: (held(m) or {}).get("quantity") == 75)
            # every REST answer now comes 400 ms after the venue acted on it, while the ticker
            # pushes fills at once: a positions fetch under way sees fills land meanwhile
            await control.post("/_venue/faults", json={"latency_ms": 400})
            fetched = actor.live.fetches
            actor.live.reconciled()  # what every reconcile does: fetch the broker's positions
            async with trio.open_nursery() as placing:
                for request in (market(), market("SELL", 150), market()):
                    placing.start_soon(broker.place, request)
            await until(stream, lambda m: (held(m) or {}).get("buy_quantity") == 225)
            while actor.live.fetches == fetched:
                await until(stream, lambda m: True)
            await control.delete("/_venue/faults")
            await broker.place(market("SELL"))  # and one after
            await until(stream, lambda m: (held(m) or {}).get("quantity") == 0)
            fetched = actor.live.fetches
            actor.live.reconciled()  # a still fetch: compared with the fills, and agreeing
            while actor.live.fetches == fetched:
                await until(stream, lambda m: True)
            (position,) = actor.positions().positions
            assert (position.buy_quantity, position.sell_quantity, position.quantity) == (
                225, 225, 0)
            assert position.realised == position.pnl
            assert "disagrees" not in caplog.text  # the broker's answers matched the fills
            assert first
            nursery.cancel_scope.cancel()


async def test_ticks_move_the_pnl_and_come_back_after_a_reconnect(
    broker: KiteBroker, sqlite_store: Store, control: httpx.AsyncClient
) -> None:
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            actor = AccountActor("primary", broker, sqlite_store, FAST)
            await nursery.start(actor.run)
            stream = positions_of(actor.subscribe(positions=True))
            await broker.place(market())
            filled = await until(stream, lambda m: (held(m) or {}).get("ltp") is not None)
            average = held(filled)["average_price"]  # type: ignore[index]
            await control.post("/_venue/ltp", json={f"NFO:{FUT}": average + 10})
            moved = await until(stream, lambda m: held(m)["ltp"] == average + 10)  # type: ignore[index]
            assert held(moved)["pnl"] == pytest.approx(75 * 10)  # type: ignore[index]
            assert moved["total_pnl"] == pytest.approx(75 * 10)
            token = held(moved)["instrument_token"]  # type: ignore[index]
            assert token & 0xFF == 2 and actor.live.subscribed == {token}

            await control.post("/_venue/faults", json={"drop_ticker": True})
            await until(stream, lambda m: held(m)["ltp"] is None)  # type: ignore[index]
            await control.post("/_venue/ltp", json={f"NFO:{FUT}": average - 5})
            again = await until(stream, lambda m: held(m)["ltp"] == average - 5)  # type: ignore[index]
            assert held(again)["pnl"] == pytest.approx(-75 * 5)  # type: ignore[index]
            assert actor.upstream.reconnects >= 1
            nursery.cancel_scope.cancel()


async def test_positions_messages_are_throttled(
    broker: KiteBroker, sqlite_store: Store, control: httpx.AsyncClient
) -> None:
    config = ActorConfig(reconnect_initial_s=0.05, positions_max_rate_hz=4)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            actor = AccountActor("primary", broker, sqlite_store, config)
            await nursery.start(actor.run)
            sub = actor.subscribe(positions=True)
            stream = positions_of(sub)
            await broker.place(market())
            first = await until(stream, lambda m: (held(m) or {}).get("ltp") is not None)
            base = held(first)["ltp"]  # type: ignore[index]
            started = trio.current_time()
            for n in range(1, 41):  # 40 price moves as fast as the venue takes them
                await control.post("/_venue/ltp", json={f"NFO:{FUT}": base + n})
            count = 0
            async for message in stream:
                count += 1
                if held(message)["ltp"] == base + 40:  # type: ignore[index]
                    break
            elapsed = trio.current_time() - started
            average = held(first)["average_price"]  # type: ignore[index]
            assert message["total_pnl"] == pytest.approx(75 * (base + 40 - average))
            # at most 4 a second (and the first at once), however fast the prices move
            assert count <= 4 * elapsed + 2, (count, elapsed)
            assert sub.closed_reason is None
            nursery.cancel_scope.cancel()


def test_a_fill_still_on_its_way_is_never_counted_twice() -> None:
    book = PositionBook()
    broker = Position(FUT, "NFO", "NRML", 75, instrument_token=2, buy_quantity=75,
                      buy_value=7_500.0, day_buy_quantity=75, day_buy_value=7_500.0,
                      day_sell_quantity=0, day_sell_value=0.0)
    book.reconcile([broker], [], fills_stable=True, account="a")  # the broker saw it first
    orders = [_fill("1", "BUY", 75, 100.0)]  # then the ticker's push
    assert book.views(orders)[0].quantity == 75
    book.reconcile([broker], orders, fills_stable=True, account="a")
    assert book.views(orders)[0].quantity == 75


async def test_a_stream_without_market_data_leaves_pnl_unknown() -> None:
    book = OrderBook([_fill("1", "BUY", 75, 100.0)])
    live = LivePositions("a", broker=None, config=FAST,  # type: ignore[arg-type]
                         subscribers=SubscriberSet(), orders=lambda: book)
    live.on_prices([])
    await live.follow_market(object())  # a stream that cannot subscribe: returns at once
    (position,) = live.report().positions
    assert position.quantity == 75 and position.ltp is None and position.pnl is None
    assert live.report().total_pnl is None and not live.report().ltp_available
