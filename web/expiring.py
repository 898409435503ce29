"""Random ids handed to browsers, each standing for a value for a bounded time: the one shape of
websocket tickets (web/auth.py) and session ids (web/sessions.py).

At most `max_entries` are kept; past that the oldest goes first. One lifetime for all, so the
oldest also expires first and expired entries are dropped from the front as we go (no timer).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["ExpiringBook"]

T = TypeVar("T")


class ExpiringBook(Generic[T]):
    """`id -> value` for `ttl_s` seconds; `on_drop(id, value)` hears of every entry that expired
    or was pushed out by a newer one (not of those taken out with `pop` or `drop_if`)."""

    def __init__(
        self,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 10_000,
        id_bytes: int = 24,
        on_drop: Callable[[str, T], None] | None = None,
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_entries
        self._id_bytes = id_bytes
        self._on_drop = on_drop
        self._entries: OrderedDict[str, tuple[T, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, value: T) -> str:
        """A new random id for `value`, good for `ttl_s` from now."""
        now = self._clock()
        self._purge(now)
        while len(self._entries) >= self._max:
            self._drop(next(iter(self._entries)))
        entry_id = secrets.token_urlsafe(self._id_bytes)
        self._entries[entry_id] = (value, now + self.ttl_s)
        return entry_id

    def get(self, entry_id: str) -> T | None:
        """The value of a live id; None when unknown, taken out or expired."""
        self._purge(self._clock())
        entry = self._entries.get(entry_id)
        return None if entry is None else entry[0]

    def pop(self, entry_id: str) -> T | None:
        """Take the id out; its value if it was live."""
        entry = self._entries.pop(entry_id, None)
        if entry is None or self._clock() >= entry[1]:
            return None
        return entry[0]

    def drop_if(self, predicate: Callable[[T], bool]) -> list[str]:
        """Take out every id whose value matches; their ids."""
        ids = [i for i, (value, _) in self._entries.items() if predicate(value)]
        for entry_id in ids:
            del self._entries[entry_id]
        return ids

    def _drop(self, entry_id: str) -> None:
        value, _ = self._entries.pop(entry_id)
        if self._on_drop is not None:
            self._on_drop(entry_id, value)

    def _purge(self, now: float) -> None:
        while self._entries:
            entry_id, (_, expires_at) = next(iter(self._entries.items()))
            if expires_at > now:
                break
            self._drop(entry_id)
