"""In-process waiters on an account's orders (the batch legs): each hears of the updates of an
order id or a tag once they are committed, on a bounded channel of its own."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from brokers.base import Order

__all__ = ["Watchers"]

log = logging.getLogger("actors.account")


class Watchers:
    """Channels by order id or tag. A watcher that does not keep up loses updates (logged):
    the actor never blocks on one; legs poll the broker when pushes go silent."""

    def __init__(self) -> None:
        self._channels: dict[str, list[trio.MemorySendChannel[Order]]] = {}

    @contextmanager
    def watch(self, key: str, capacity: int = 256) -> Iterator[trio.MemoryReceiveChannel[Order]]:
        """Updates for an order_id or a tag, from now on; register before placing the order."""
        send, receive = trio.open_memory_channel[Order](capacity)
        self._channels.setdefault(key, []).append(send)
        try:
            yield receive
        finally:
            channels = self._channels.get(key, [])
            if send in channels:
                channels.remove(send)
            if not channels:
                self._channels.pop(key, None)
            send.close()

    def notify(self, order: Order) -> None:
        for key in (order.order_id, order.tag):
            for send in self._channels.get(key or "", ()):
                try:
                    send.send_nowait(order)
                except (trio.WouldBlock, trio.ClosedResourceError):
                    log.warning("watcher of %s is not keeping up; dropped an update", key)
