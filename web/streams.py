"""The live websocket subscriptions of one app (web/ws.py adds and drops them), so that shutdown
can close them all at once."""

from __future__ import annotations

from actors.account import Subscription


class StreamRegistry:
    """The live websocket subscriptions of one app, so shutdown can close them all at once."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self.closing: str | None = None

    def __len__(self) -> int:
        return len(self._subs)

    def add(self, sub: Subscription) -> None:
        self._subs.add(sub)
        if self.closing is not None:
            sub.close(self.closing)

    def discard(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def close_all(self, reason: str) -> None:
        self.closing = reason
        for sub in list(self._subs):
            sub.close(reason)
