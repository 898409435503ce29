"""Downstream subscribers of one account: a bounded queue each, and an explicit overflow policy.

The actor offers each encoded message with `send_nowait`; a subscriber whose queue is full is
closed as a slow consumer (websocket close 4008) instead of slowing the actor or its peers.

A subscriber whose sender is idle (nothing queued, nothing being written) may take a message
through `direct` instead: the web front's synchronous write of the frame to its socket, so a
subscriber that keeps up costs the fan-out one call and no task switch. `direct` returns False
when it cannot write now; the message is then queued as usual, and everything after it too
until the sender has caught up and declares itself idle again, so order is kept.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import trio

SLOW_CONSUMER = "slow consumer"
#: Queued to wake the sender when a subscriber's latest `positions` message was replaced: never
#: a message itself (every message is JSON), and at most one is ever waiting per subscriber.
LATEST = " "

_ids = itertools.count(1)


class Subscription:
    """One subscriber's view: messages to send first, then the live queue."""

    def __init__(self, account: str, initial: Sequence[str], capacity: int, *,
                 positions: bool = False) -> None:
        self.id = next(_ids)
        self.positions = positions  # wants `positions` messages (only the latest is kept)
        #: instruments this subscriber asked to watch: token -> (exchange, tradingsymbol)
        self.watched: dict[int, tuple[str, str]] = {}
        self._latest: str | None = None
        self.account = account
        self.initial = list(initial)
        self.closed_reason: str | None = None
        self.direct: Callable[[str], bool] | None = None  # set by the web front
        self.idle = False  # set by the sender when it waits with nothing queued or in flight
        self._send, self.receive = trio.open_memory_channel[str](capacity)

    def offer(self, message: str) -> bool:
        """Queue without waiting; False (and closed) when the subscriber is too slow."""
        self.idle = False
        try:
            self._send.send_nowait(message)
        except trio.WouldBlock:
            self.close(SLOW_CONSUMER)
            return False
        except trio.ClosedResourceError:
            return False
        return True

    def set_latest(self, message: str) -> None:
        """Replace the waiting `positions` message: it never counts toward the queue's bound,
        a subscriber that is slow to read them only skips the stale ones."""
        if self.idle and self.direct is not None and self.direct(message):
            return
        pending = self._latest is not None
        self._latest = message
        if not pending:
            try:
                self._send.send_nowait(LATEST)
            except (trio.WouldBlock, trio.ClosedResourceError):
                pass  # a full queue: the sender reads on and finds it (`take_latest`)

    def take_latest(self) -> str | None:
        message, self._latest = self._latest, None
        return message

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self._send.close()

    def depth(self) -> int:
        return self._send.statistics().current_buffer_used


class SubscriberSet:
    """The subscribers of one account; fan-out offers one pre-encoded string to each.

    What health asks on every update is kept as it changes, never found by a scan of every
    subscriber: how many want `positions`, and the deepest queue at the last fan-out
    (`depth`; subscribers written to directly have nothing queued).
    """

    def __init__(self) -> None:
        self._subs: dict[int, Subscription] = {}
        self._positions = 0  # subscribers with `positions`
        self.depth = 0

    def __len__(self) -> int:
        return len(self._subs)

    def add(self, sub: Subscription) -> None:
        if sub.id not in self._subs:
            self._subs[sub.id] = sub
            self._positions += sub.positions

    def remove(self, sub: Subscription) -> None:
        if self._subs.pop(sub.id, None) is not None:
            self._positions -= sub.positions

    def broadcast(self, message: str) -> None:
        depth = 0
        slow = []
        for sub in self._subs.values():
            if sub.idle and sub.direct is not None and sub.direct(message):
                continue
            if sub.offer(message):
                depth = max(depth, sub.depth())
            else:
                slow.append(sub)
        self.depth = depth
        for sub in slow:
            self.remove(sub)

    def publish_latest(self, message: str, own: Callable[[Subscription, str], str]) -> None:
        """A `positions` message for those who asked for it (only the latest is kept); one
        that watches instruments gets `own(sub, message)` instead, with their prices."""
        for sub in self._subs.values():
            if sub.positions:
                sub.set_latest(own(sub, message) if sub.watched else message)

    def want_positions(self) -> bool:
        return self._positions > 0

    def close_all(self, reason: str) -> None:
        for sub in self._subs.values():
            sub.close(reason)
        self._subs.clear()
        self._positions = self.depth = 0

    def max_depth(self) -> int:
        """The deepest queue now (a scan: for status reads, not for every update)."""
        # an idle subscriber has nothing queued: only the others are worth asking
        return max((sub.depth() for sub in self._subs.values() if not sub.idle), default=0)
