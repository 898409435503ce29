"""An account's orders as `GET /orders` lists them: the whole day's, so kept per account and
encoded once per change of each order, not once per listing (the gateway lists every account's
day at each reconnect and periodically while an order works)."""

from __future__ import annotations

import json

from .book import Order


class OrderListing:
    """Every order of the day by account, with the JSON text of each until it changes."""

    def __init__(self) -> None:
        self._by_account: dict[str, dict[str, Order]] = {}
        self._encoded: dict[str, str] = {}  # order id -> to_kite() as JSON

    def add(self, order: Order) -> None:
        self._by_account.setdefault(order.account, {})[order.order_id] = order

    def changed(self, order_id: str) -> None:
        """The order's state moved (the engine records every change): encode it again."""
        self._encoded.pop(order_id, None)

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
