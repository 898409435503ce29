"""The order book of one account: latest state per order, and the rules an update must pass.

Kite's pushes can arrive duplicated, late (an OPEN after the COMPLETE) or as the event-only
status UPDATE (a partial fill, a modify). The book decides what is news; everything else is
dropped here so that subscribers never see a final order come back to life.

An update is never merged into a different order: one whose order id the book knows but whose
fixed fields (instrument, side, product, tag, placement time) differ is a `Conflict` (a venue that
reused an id), not applied; the actor reports it.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from brokers.base import EVENT_ONLY_STATUSES, Order, stays_final

# Fields whose change makes an update news; timestamps alone do not.
_SIGNIFICANT = (
    "status",
    "filled_quantity",
    "pending_quantity",
    "cancelled_quantity",
    "average_price",
    "quantity",
    "price",
    "trigger_price",
    "order_type",
    "status_message",
)


# Fields an order keeps for life: a known id with other values is another order.
FIXED_FIELDS = (
    "exchange",
    "tradingsymbol",
    "transaction_type",
    "product",
    "tag",
    "order_timestamp",
)

# Statuses before the exchange has the order; one arriving after any later status is stale.
_PRE_OPEN = frozenset({"PUT ORDER REQ RECEIVED", "VALIDATION PENDING", "OPEN PENDING"})


@attrs.frozen
class Accepted:
    """An update the book took: the payload to store and send, and what kind of event it was."""

    order_id: str
    payload: Mapping[str, Any]
    event: str | None = None  # "UPDATE" for Kite's event-only pushes


@attrs.frozen
class Conflict:
    """An update for a known order id whose fixed fields differ from the book's order."""

    order_id: str
    fields: tuple[str, ...]
    reason: str  # one line: the order id, and each field with the book's and the update's value


class OrderBook:
    """Latest payload per order_id. Owned by one actor; not shared across tasks.

    `apply` stages an update; readers (snapshots, the orders route) see it only after `commit`,
    which the actor calls once the update is stored, so nothing uncommitted is ever shown.

    What it holds does not grow with the day: every working order and the last `keep_finished`
    final ones in full; an older final order is retired to its id, status and fixed fields (a
    late push of it is still stale, another order under its id still a `Conflict`) and its
    fills to one running total per position and side (`fill_payloads`). The store keeps them
    all; `GET /accounts/{id}/orders?before=` pages them from there.
    """

    def __init__(
        self, payloads: Iterable[Mapping[str, Any]] = (), *, keep_finished: int = 1_000
    ) -> None:
        self._orders: dict[str, dict[str, Any]] = {}
        self._staged: dict[str, dict[str, Any]] = {}
        self._keep = max(1, keep_finished)
        self._finished: dict[str, None] = {}  # final orders held in full, oldest first
        self._retired: dict[str, tuple[Any, ...]] = {}  # id -> (status, filled, *FIXED_FIELDS)
        self._retired_fills: dict[tuple[str, ...], list[Any]] = {}  # -> [quantity, value, token]
        self._open: set[str] = set()  # orders not final
        self._nets: dict[tuple[str, str, str], list[int]] = {}  # position -> [net filled, token]
        for payload in payloads:
            self._orders[str(payload["order_id"])] = dict(payload)
        self._count_fills(self._orders.values(), 1)
        self._settle(self._orders)

    def __len__(self) -> int:
        return len(self._orders)

    def get(self, order_id: str) -> Mapping[str, Any] | None:
        return self._orders.get(order_id)

    def payloads(self) -> list[Mapping[str, Any]]:
        """Every working order and the last `keep_finished` final ones."""
        return list(self._orders.values())

    def tagged(self, prefix: str) -> list[Mapping[str, Any]]:
        """Orders whose tag starts with `prefix`, retired ones too (their id, status, fill
        and fixed fields): what an idempotency key's replay looks up."""
        at = 2 + FIXED_FIELDS.index("tag")
        retired = [self._retired_payload(oid) for oid, kept in self._retired.items()
                   if str(kept[at] or "").startswith(prefix)]
        return [*retired, *(p for p in self._orders.values()
                            if str(p.get("tag") or "").startswith(prefix))]

    def working(self) -> bool:
        """Whether any order held may still change (every retired one is final)."""
        return len(self._orders) > len(self._finished)

    def final(self, order_id: str) -> bool:
        """Whether the book knows `order_id` as final (held in full or retired)."""
        if order_id in self._retired:
            return True
        payload = self._orders.get(order_id)
        return payload is not None and stays_final(payload.get("status"))

    def snapshot(self, finished: int) -> tuple[list[Mapping[str, Any]], str | None]:
        """Every working order and the last `finished` final ones (book order), and the
        paging cursor: the oldest final order shown, when older final ones were left out."""
        newest = list(itertools.islice(reversed(self._finished), max(1, finished)))
        shown = set(newest)
        orders = [p for oid, p in self._orders.items() if oid in shown or oid not in self._finished]
        left_out = self._retired or len(self._finished) > len(newest)
        return orders, newest[-1] if left_out and newest else None

    def fill_payloads(self) -> list[Mapping[str, Any]]:
        """What the positions count: the orders held and, per position and side, one row
        summing the fills of the retired ones."""
        rows = [{"order_id": "retired:" + ":".join(key), "exchange": key[0],
                 "tradingsymbol": key[1], "product": key[2], "transaction_type": key[3],
                 "status": "COMPLETE", "filled_quantity": quantity,
                 "average_price": value / quantity, "instrument_token": token}
                for key, (quantity, value, token) in self._retired_fills.items()]
        return [*self._orders.values(), *rows]

    def net_fills(self) -> Mapping[tuple[str, str, str], list[int]]:
        """Per position (exchange, tradingsymbol, product): units bought less sold over every
        order of the day, retired ones too, and its instrument token; kept as updates are
        committed, so what the positions ask often is no look at every order."""
        return self._nets

    def open_payloads(self) -> list[Mapping[str, Any]]:
        """The orders that are not final."""
        return [self._orders[order_id] for order_id in self._open]

    def roll(self, day: str) -> None:
        """A new trading day (YYYY-MM-DD, IST) while running: only its orders stay, as a
        start on that day would load them (`of_day`)."""
        kept = of_day(self._orders.values(), day)
        self._orders = {str(p["order_id"]): dict(p) for p in kept}
        self._finished.clear()
        self._retired.clear()
        self._retired_fills.clear()
        self._open.clear()
        self._nets.clear()
        self._count_fills(self._orders.values(), 1)
        self._settle(self._orders)

    def commit(self) -> None:
        self._count_fills((self._orders[i] for i in self._staged if i in self._orders), -1)
        self._count_fills(self._staged.values(), 1)
        self._orders.update(self._staged)
        self._settle(self._staged)
        self._staged.clear()

    def _count_fills(self, payloads: Iterable[Mapping[str, Any]], sign: int) -> None:
        for payload in payloads:
            filled = int(_num(payload.get("filled_quantity")))
            if filled <= 0:
                continue
            key = (str(payload.get("exchange") or ""), str(payload.get("tradingsymbol") or ""),
                   str(payload.get("product") or ""))
            net = self._nets.setdefault(key, [0, 0])
            net[0] += sign * (filled if payload.get("transaction_type") == "BUY" else -filled)
            if sign > 0 and payload.get("instrument_token"):
                net[1] = int(payload["instrument_token"])

    def _settle(self, order_ids: Iterable[str]) -> None:
        """Note the orders of `order_ids` that are now final; retire the oldest beyond
        `keep_finished`."""
        for order_id in order_ids:
            if not stays_final(self._orders[order_id].get("status")):
                self._open.add(order_id)
                continue
            self._open.discard(order_id)
            self._finished.pop(order_id, None)
            self._finished[order_id] = None
        while len(self._finished) > self._keep:
            order_id = next(iter(self._finished))
            del self._finished[order_id]
            self._retire(self._orders.pop(order_id))

    def _retire(self, payload: Mapping[str, Any]) -> None:
        self._retired[str(payload["order_id"])] = (
            _shared(payload.get("status")), payload.get("filled_quantity"),
            *(_shared(payload.get(k)) if k in _FEW_VALUES else payload.get(k)
              for k in FIXED_FIELDS))
        filled = _num(payload.get("filled_quantity"))
        if filled <= 0:
            return
        key = tuple(str(payload.get(k) or "") for k in
                    ("exchange", "tradingsymbol", "product", "transaction_type"))
        total = self._retired_fills.setdefault(key, [0, 0.0, None])
        total[0] += int(filled)
        total[1] += filled * _num(payload.get("average_price"))
        total[2] = payload.get("instrument_token") or total[2]

    def discard(self) -> None:
        self._staged.clear()

    def _latest(self, order_id: str) -> dict[str, Any] | None:
        staged = self._staged.get(order_id)
        if staged is not None:
            return staged
        current = self._orders.get(order_id)
        if current is None and order_id in self._retired:
            return self._retired_payload(order_id)
        return current

    def _retired_payload(self, order_id: str) -> dict[str, Any]:
        """What the book keeps of a retired order, as a payload."""
        status, filled, *fixed = self._retired[order_id]
        return {"order_id": order_id, "status": status, "filled_quantity": filled,
                **dict(zip(FIXED_FIELDS, fixed, strict=True))}

    def apply(self, order: Order) -> Accepted | Conflict | None:
        """Stage `order` if it is news; None when it is a duplicate or stale, a `Conflict`
        (nothing staged) when it is another order than the one the book holds under its id."""
        incoming = _payload(order)
        current = self._latest(order.order_id)
        if current is not None:
            conflict = _conflict(order.order_id, current, incoming)
            if conflict is not None:
                return conflict
        event = None
        if order.status in EVENT_ONLY_STATUSES:
            event = order.status
            incoming["status"] = current["status"] if current else "OPEN"
        if current is not None:
            if _stale(current, incoming):
                return None
            if all(incoming.get(k) == current.get(k) for k in _SIGNIFICANT):
                return None
            incoming = {**current, **incoming}
        self._staged[order.order_id] = incoming
        return Accepted(order.order_id, incoming, event)

    def changed(self, order: Order) -> bool:
        """Would `order` (from a reconciliation listing) change the book?"""
        current = self._latest(order.order_id)
        if current is None or _conflict(order.order_id, current, order.raw or _payload(order)):
            return True  # a conflict too: `apply` reports it (asked of every listed order:
            # the broker's payload is read as it is, not copied)
        if stays_final(current.get("status")):
            return False
        return any(order.raw.get(k) != current.get(k) for k in _SIGNIFICANT)


def of_day(payloads: Iterable[Mapping[str, Any]], day: str) -> list[Mapping[str, Any]]:
    """The orders placed on `day` (YYYY-MM-DD, IST: Kite's timestamps). One that states no time
    is left out too: the broker lists the day's orders, so the reconcile brings it back if it is
    one of them, and an order of another day never sits in the book under an id reused since."""
    def day_of(payload: Mapping[str, Any]) -> str:
        stamp = (payload.get("order_timestamp") or payload.get("exchange_timestamp")
                 or payload.get("exchange_update_timestamp"))
        return str(stamp or "")[:10]

    return [p for p in payloads if day_of(p) == day]


def _payload(order: Order) -> dict[str, Any]:
    """The broker's own payload of `order` (its fields when it came without one)."""
    payload = dict(order.raw) if order.raw else attrs.asdict(order, filter=_no_raw)
    payload["order_id"] = order.order_id
    return payload


def _conflict(
    order_id: str, current: Mapping[str, Any], incoming: Mapping[str, Any]
) -> Conflict | None:
    """Fixed fields both sides state (an absent or empty value says nothing) and that differ."""
    fields = tuple(k for k in FIXED_FIELDS
                   if current.get(k) and incoming.get(k) and current[k] != incoming[k])
    if not fields:
        return None
    changes = "; ".join(f"{k} {current[k]!r} in the book, {incoming[k]!r} in the update"
                        for k in fields)
    return Conflict(order_id, fields, f"order {order_id}: update not applied, it is another "
                                      f"order than the one the book holds ({changes})")


def _stale(current: Mapping[str, Any], incoming: Mapping[str, Any]) -> bool:
    """Final stays final (`stays_final`); fills never go back; nothing older than what the
    book holds."""
    if stays_final(current.get("status")):
        return True
    if _num(incoming.get("filled_quantity")) < _num(current.get("filled_quantity")):
        return True
    if incoming.get("status") in _PRE_OPEN and current.get("status") not in _PRE_OPEN:
        return True
    # Kite's timestamps are "YYYY-MM-DD HH:MM:SS": string order is time order.
    new, old = incoming.get("exchange_update_timestamp"), current.get("exchange_update_timestamp")
    return bool(new and old and str(new) < str(old))


#: Fixed fields with few distinct values: a retired order keeps the one shared string of each.
_FEW_VALUES = frozenset({"exchange", "tradingsymbol", "transaction_type", "product"})


def _shared(value: Any) -> Any:
    return sys.intern(value) if isinstance(value, str) else value


def _no_raw(attribute: attrs.Attribute, _value: object) -> bool:
    return attribute.name != "raw"


def _num(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
