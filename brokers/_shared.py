"""One call in flight, shared by everyone who asks meanwhile (for `GET /orders`).

Kite allows about 10 reads a second per user, and the whole order listing answers every
question a caller has (a leg's state, a tag's order, a reconciliation). So callers share it:
whoever asks while a listing is in flight waits for it to end and then shares the *next* one,
which starts after they asked and so sees everything they expect to see. However many legs,
lookups and reconciliations ask at once, at most one listing is in flight and one queued. A
caller that can live with a slightly older answer (a leg's routine poll) says how old
(`max_age_s`) and gets the latest listing that started within it, if there is one.

Only a call that such a caller joined is kept for the next ones: a listing is the whole day's
orders, and the account's periodic reconcile (which wants a fresh one) would otherwise keep
the latest of them alive between its rounds, a cost that grows with the day.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import attrs
import trio

from .base import BrokerError

T = TypeVar("T")


@attrs.define(eq=False)
class _Call(Generic[T]):
    done: trio.Event = attrs.field(factory=trio.Event)
    result: T | None = None
    error: BrokerError | None = None
    finished: bool = False
    reusable: bool = False  # a caller that takes an older answer joined: keep the result


class SharedCall(Generic[T]):
    """`await shared.get()`: the result of a call of `fetch` that started after it was asked."""

    def __init__(self, fetch: Callable[[], Awaitable[T]]) -> None:
        self._fetch = fetch
        self._running: _Call[T] | None = None
        self._next: _Call[T] | None = None  # not started yet: everyone asking now joins it
        self._last: tuple[float, T] | None = None  # the latest result, with when it started
        self.calls = 0  # fetches started (for tests and figures)

    async def get(self, max_age_s: float = 0.0) -> T:
        """A result of a call that started after this call, or at most `max_age_s` before."""
        last = self._last
        if last is not None and last[0] >= trio.current_time() - max_age_s and max_age_s > 0:
            return last[1]
        if self._next is None:
            self._next = _Call()
        call = self._next
        call.reusable = call.reusable or max_age_s > 0
        while not call.finished:
            if self._running is None:
                await self._lead(call)
            else:
                await self._running.done.wait()
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[return-value]

    async def _lead(self, call: _Call[T]) -> None:
        if self._next is call:
            self._next = None
        self._running = call
        self.calls += 1
        started = trio.current_time()
        try:
            call.result = await self._fetch()
            call.finished = True
            self._last = (started, call.result) if call.reusable else None
        except BrokerError as exc:
            call.error, call.finished = exc, True
        finally:
            self._running = None
            done = call.done
            if not call.finished:  # the leader was cancelled: a waiter leads it again
                call.done = trio.Event()
                self._next = self._next or call
            done.set()
