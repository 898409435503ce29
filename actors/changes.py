"""`Changes`: wait until a condition on something an owner mutates in place holds.

Counters and states the actors keep as plain fields (a health entry, the coordinator's work in
flight) have no stream to watch. Their owner calls `notify()` after a change; a waiter re-checks
its condition on each, instead of polling. Nothing is allocated while nobody waits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")


class Changes:
    """A level-triggered change signal: `await changes.until(check)` returns `check()`'s first
    truthy value, looking again after every `notify()`."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: trio.Event | None = None

    def notify(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def until(self, check: Callable[[], T]) -> T:
        while not (value := check()):
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        return value
