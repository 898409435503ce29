"""An account's orders as `GET /orders` lists them: the whole day's, so kept per account and
encoded once per change of each order, not once per listing (the gateway lists every account's
day at each reconnect and periodically while an order works). The same text is the change's
entry in the order's history (`GET /orders/{id}`): text, not a dict per state, so a day of
orders is small and gives the garbage collector nothing to walk."""

from __future__ import annotations

import json
from typing import Any

from .book import Order


class OrderListing:
    """Every order of the day by account, with the JSON text of each until it changes."""

    def __init__(self) -> None:
        self._by_account: dict[str, dict[str, Order]] = {}
        self._encoded: dict[str, str] = {}  # order id -> to_kite() as JSON

    def add(self, order: Order) -> None:
        self._by_account.setdefault(order.account, {})[order.order_id] = order

    def recorded(self, order_id: str, snapshot: dict[str, Any], current: bool) -> str:
        """A change the engine records (every change is): `snapshot` as JSON text, what the
        listing shows from now on when it is the order's `current` state (not a MODIFIED
        step, which the next record follows at once)."""
        text = json.dumps(snapshot, allow_nan=False)
        if current:
            self._encoded[order_id] = text
        else:
            self._encoded.pop(order_id, None)
        return text

    def clear(self) -> None:
        self._by_account.clear()
        self._encoded.clear()

    def orders(self, account: str) -> list[Order]:
        return list(self._by_account.get(account, {}).values())

    def json(self, account: str) -> str:
        """`account`'s orders, oldest first, as a JSON array."""
        encoded = self._encoded
        texts = []
        for order in self._by_account.get(account, {}).values():
            text = encoded.get(order.order_id)
            if text is None:
                text = encoded[order.order_id] = json.dumps(order.to_kite(), allow_nan=False)
            texts.append(text)
        return "[" + ", ".join(texts) + "]"
