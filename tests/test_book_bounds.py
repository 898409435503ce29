"""What the book holds does not grow with the day (issue 17): every working order and the
last `keep_finished` final ones; older final ones are retired yet still stale, still conflicts,
still counted in the positions; the snapshot carries the newest final ones and a cursor; the
book rolls over to a new IST day."""

from __future__ import annotations

import trio

from actors.account import Accepted, Conflict, OrderBook
from actors.account.position_book import PositionBook, fill_totals
from actors.account.reconnect import changed_orders
from brokers.kite import parse_order

DAY = "2026-12-01"


def order(n: int, status: str, *, side: str = "BUY", day: str = DAY, **extra: object) -> dict:
    filled = 75 if status == "COMPLETE" else 0
    return {"order_id": f"2512010000{n:05d}", "status": status, "exchange": "NFO",
            "tradingsymbol": "NIFTY26DECFUT", "product": "NRML", "transaction_type": side,
            "quantity": 75, "filled_quantity": filled, "pending_quantity": 75 - filled,
            "average_price": 24000.0 + n if filled else 0.0, "price": 0,
            "instrument_token": 1234, "order_timestamp": f"{day} 09:{n // 60:02d}:{n % 60:02d}",
            **extra}


def committed(book: OrderBook, payload: dict) -> Accepted | Conflict | None:
    taken = book.apply(parse_order(payload))
    book.commit()
    return taken


def test_a_day_of_orders_keeps_the_book_bounded_and_the_fills_whole() -> None:
    book = OrderBook(keep_finished=5)
    for n in range(40):
        side = "BUY" if n % 4 else "SELL"
        assert isinstance(committed(book, order(n, "OPEN", side=side)), Accepted)
        assert isinstance(committed(book, order(n, "COMPLETE", side=side)), Accepted)
    for n in range(40, 43):
        committed(book, order(n, "OPEN"))  # working: always held
    assert len(book.payloads()) == 3 + 5
    assert book.working()
    # every fill of the day still counts, retired or not
    every = [order(n, "COMPLETE", side="BUY" if n % 4 else "SELL") for n in range(40)]
    assert _totals(book.fill_payloads()) == _totals(every)
    # a late push of a retired order is stale; another order under its id a conflict
    assert committed(book, order(1, "OPEN")) is None
    assert book.final(order(1, "OPEN")["order_id"])
    assert not book.changed(parse_order(order(1, "COMPLETE")))
    conflict = committed(book, order(2, "OPEN", tradingsymbol="BANKNIFTY26DECFUT"))
    assert isinstance(conflict, Conflict) and conflict.fields == ("tradingsymbol",)


def test_the_net_fills_and_open_orders_are_kept_as_updates_commit() -> None:
    """What the market subscriptions ask after every burst (net units per position, the
    orders not final) is the same as a look at every order's fills, without that look."""
    book = OrderBook(keep_finished=3)
    for n in range(12):
        side = "BUY" if n % 3 else "SELL"
        committed(book, order(n, "OPEN", side=side))
        committed(book, order(n, "UPDATE", side=side, filled_quantity=25,
                              pending_quantity=50, average_price=100.0))
        if n < 10:
            committed(book, order(n, "COMPLETE", side=side))
    every = [order(n, "COMPLETE", side="BUY" if n % 3 else "SELL") for n in range(10)]
    every += [order(n, "OPEN", side="BUY", filled_quantity=25) for n in (10, 11)]
    (key, (bought, _, sold, _)), = _totals(every).items()
    assert {k: tuple(v) for k, v in book.net_fills().items()} == {key: (bought - sold, 1234)}
    assert sorted(p["order_id"] for p in book.open_payloads()) == [
        order(n, "OPEN")["order_id"] for n in (10, 11)]
    assert PositionBook().held_tokens(book.net_fills()) == {
        v.instrument_token for v in PositionBook().views(book.fill_payloads()) if v.quantity}
    book.roll("2026-12-02")
    assert book.net_fills() == {} and book.open_payloads() == []


def _totals(payloads: list) -> dict:
    totals, _ = fill_totals(payloads, {})
    return {k: (t.buy_quantity, round(t.buy_value, 6), t.sell_quantity, round(t.sell_value, 6))
            for k, t in totals.items()}


def test_the_snapshot_carries_the_newest_final_orders_and_a_cursor() -> None:
    book = OrderBook(keep_finished=8)
    for n in range(6):
        committed(book, order(n, "OPEN"))
    for n in (2, 0, 4, 1):  # they settle in this order
        committed(book, order(n, "CANCELLED"))
    orders, older = book.snapshot(2)
    ids = [p["order_id"] for p in orders]
    assert ids == [order(n, "OPEN")["order_id"] for n in (1, 3, 4, 5)]  # book order
    assert older == order(4, "OPEN")["order_id"]  # the oldest final order shown
    orders, older = book.snapshot(10)
    assert len(orders) == 6 and older is None  # nothing left out
    # past keep_finished: the cursor is there even when every held final order is shown
    for n in range(6, 20):
        committed(book, order(n, "REJECTED"))
    orders, older = book.snapshot(8)
    assert len(orders) == 2 + 8 and older is not None


def test_the_book_rolls_over_to_the_new_day() -> None:
    book = OrderBook(keep_finished=2)
    for n in range(5):
        committed(book, order(n, "COMPLETE"))
    committed(book, order(5, "OPEN"))
    committed(book, order(6, "OPEN", day="2026-12-02"))  # placed after midnight
    book.roll("2026-12-02")
    assert [p["order_id"] for p in book.payloads()] == [order(6, "OPEN")["order_id"]]
    assert book.fill_payloads() == book.payloads()  # yesterday's fills are the broker's now
    # an id of yesterday's is news again on the new day (ids are per day at the broker)
    assert isinstance(committed(book, order(0, "OPEN", day="2026-12-02")), Accepted)


def test_tags_of_retired_orders_are_still_found() -> None:
    """An Idempotency-Key's replay looks its order up by tag, however long ago it settled."""
    book = OrderBook(keep_finished=2)
    for n in range(6):
        committed(book, order(n, "OPEN", tag=f"od{n}"))
        committed(book, order(n, "COMPLETE", tag=f"od{n}"))
    assert len(book.payloads()) == 2
    found = book.tagged("od0")
    assert [(p["order_id"], p["status"], p["filled_quantity"]) for p in found] == [
        (order(0, "OPEN")["order_id"], "COMPLETE", 75)]
    assert len(book.tagged("od")) == 6
    assert parse_order(dict(found[0])).tag == "od0"


async def test_a_days_listing_is_compared_with_the_book_a_slice_at_a_time() -> None:
    """A reconcile's listing is the whole day's orders: while it is compared with the book,
    the other accounts' tasks run in between (the same orders found as one look would)."""
    book = OrderBook(keep_finished=100)
    for n in range(2_400):
        committed(book, order(n, "OPEN"))
        committed(book, order(n, "COMPLETE"))
    listing = [parse_order(order(n, "COMPLETE")) for n in range(2_400)]
    listing += [parse_order(order(n, "OPEN")) for n in range(2_400, 2_403)]  # new ones
    turns = 0

    async def other_account() -> None:
        nonlocal turns
        while True:
            turns += 1
            await trio.lowlevel.checkpoint()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other_account)
            await trio.lowlevel.checkpoint()
            before = turns
            found = await changed_orders(book, listing)
            nursery.cancel_scope.cancel()
    assert [o.order_id for o in found] == [o.order_id for o in listing[-3:]]
    assert turns - before >= 2  # 2,403 orders: five slices, four checkpoints between
