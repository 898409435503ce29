"""Book rules: what an account actor accepts as news, and what it drops."""

import attrs
import pytest

from actors.account import Accepted, Conflict, OrderBook
from brokers.kite import parse_order


def order(status: str, filled: int = 0, **extra) -> dict:
    payload = {
        "order_id": "251127000000001",
        "status": status,
        "tradingsymbol": "NIFTY26DECFUT",
        "exchange": "NFO",
        "quantity": 150,
        "filled_quantity": filled,
        "pending_quantity": 150 - filled,
        "average_price": 0.0 if not filled else 24000.0,
        "price": 0,
    }
    payload.update(extra)
    return payload


@attrs.frozen
class Case:
    name: str
    sequence: tuple[dict, ...]
    accepted: tuple[str, ...]  # statuses (book status after each accepted update)


CASES = [
    Case("open then complete", (order("OPEN"), order("COMPLETE", 150)), ("OPEN", "COMPLETE")),
    Case("duplicate dropped", (order("OPEN"), order("OPEN")), ("OPEN",)),
    Case(
        "final stays final",
        (order("OPEN"), order("COMPLETE", 150), order("OPEN"), order("CANCELLED", 150)),
        ("OPEN", "COMPLETE"),
    ),
    Case(
        "filled never decreases",
        (order("OPEN", 75), order("OPEN", 0, pending_quantity=140)),
        ("OPEN",),
    ),
    Case(
        "UPDATE is an event, not a status",
        (order("OPEN"), order("UPDATE", 75), order("COMPLETE", 150)),
        ("OPEN", "OPEN", "COMPLETE"),
    ),
    Case("UPDATE before anything", (order("UPDATE", 75),), ("OPEN",)),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_book_rules(case: Case) -> None:
    book = OrderBook()
    taken = [book.apply(parse_order(payload)) for payload in case.sequence]
    statuses = tuple(t.payload["status"] for t in taken if t is not None)
    assert statuses == case.accepted
    assert all(t.payload["status"] != "UPDATE" for t in taken if t is not None)


def test_update_event_is_marked_and_keeps_fields() -> None:
    book = OrderBook([order("OPEN")])
    taken = book.apply(parse_order(order("UPDATE", 75)))
    assert taken is not None and taken.event == "UPDATE"
    assert taken.payload["filled_quantity"] == 75
    assert book.get("251127000000001")["status"] == "OPEN"


def test_reconcile_sees_only_changes() -> None:
    book = OrderBook([order("OPEN")])
    assert not book.changed(parse_order(order("OPEN")))
    assert book.changed(parse_order(order("COMPLETE", 150)))
    assert book.changed(parse_order(order("OPEN", order_id="251127000000002")))
    book.apply(parse_order(order("CANCELLED")))
    assert not book.changed(parse_order(order("OPEN")))


def test_pre_open_status_after_open_is_stale() -> None:
    book = OrderBook([order("OPEN")])
    assert book.apply(parse_order(order("OPEN PENDING"))) is None
    assert book.apply(parse_order(order("VALIDATION PENDING"))) is None


def test_older_exchange_update_is_stale() -> None:
    book = OrderBook([order("OPEN", price=101, exchange_update_timestamp="2026-11-27 10:00:05")])
    older = order("OPEN", price=100, exchange_update_timestamp="2026-11-27 10:00:04")
    assert book.apply(parse_order(older)) is None
    newer = order("OPEN", price=102, exchange_update_timestamp="2026-11-27 10:00:06")
    assert book.apply(parse_order(newer)) is not None


def test_staged_updates_are_invisible_until_committed() -> None:
    book = OrderBook([order("OPEN")])
    assert book.apply(parse_order(order("COMPLETE", 150))) is not None
    assert book.get("251127000000001")["status"] == "OPEN"
    assert book.apply(parse_order(order("COMPLETE", 150))) is None  # rules see what is staged
    book.commit()
    assert book.get("251127000000001")["status"] == "COMPLETE"
    book.apply(parse_order(order("OPEN", order_id="251127000000002")))
    book.discard()
    assert book.get("251127000000002") is None


@pytest.mark.parametrize(
    ("field", "other"),
    [("exchange", "NSE"), ("tradingsymbol", "BANKNIFTY26DECFUT"), ("transaction_type", "SELL"),
     ("product", "MIS"), ("tag", "odother0001L0"), ("order_timestamp", "2025-11-27 09:20:00")],
)
def test_a_known_id_with_other_fixed_fields_is_a_conflict_not_applied(
    field: str, other: str
) -> None:
    fixed = {"transaction_type": "BUY", "product": "NRML", "tag": "odmine00001L0",
             "order_timestamp": "2025-11-27 09:15:00"}
    book = OrderBook()
    assert isinstance(book.apply(parse_order(order("COMPLETE", 150, **fixed))), Accepted)
    book.commit()
    update = parse_order(order("OPEN", **{**fixed, field: other}))
    assert book.changed(update)  # a reconcile passes it on, so that it is reported
    conflict = book.apply(update)
    assert isinstance(conflict, Conflict) and conflict.fields == (field,)
    assert conflict.order_id in conflict.reason and field in conflict.reason
    book.commit()
    assert book.get("251127000000001")["status"] == "COMPLETE"
    assert book.get("251127000000001")[field] == fixed.get(field, "NFO" if field == "exchange"
                                                           else "NIFTY26DECFUT")


def test_a_fixed_field_the_update_leaves_out_is_no_conflict() -> None:
    book = OrderBook()
    book.apply(parse_order(order("OPEN", tag="odmine00001L0")))
    book.commit()
    taken = book.apply(parse_order(order("COMPLETE", 150, tag=None, exchange="")))
    assert isinstance(taken, Accepted) and taken.payload["status"] == "COMPLETE"
