"""Fan-out of order updates to the ticker websockets, per account.

Each socket gets a bounded queue and one sender (`pump`). The engine publishes without ever
blocking: a socket whose queue is full is closed (code 1013, "slow consumer") instead. Frames of
one account go through every queue in the order the engine produced them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import attrs
import trio

HEARTBEAT_S = 1.0
STALL_CHECK_S = 0.05  # while stalled: how soon a beat goes out once the stall is cleared
HEARTBEAT = b"\x00"
QUEUE_SIZE = 256
CONNECTS_KEPT = 100_000  # the latest socket opening times the hub remembers

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008  # bad or expired credentials
CLOSE_FAULT = 1011  # drop_ticker
CLOSE_SLOW = 1013


@attrs.define(eq=False)
class Subscriber:
    account: str
    send: trio.MemorySendChannel[str]
    close_code: int = CLOSE_NORMAL
    close_reason: str = ""

    def close(self, code: int, reason: str) -> None:
        self.close_code, self.close_reason = code, reason
        self.send.close()


class TickerHub:
    def __init__(self) -> None:
        self._subs: dict[str, set[Subscriber]] = {}
        self.stalled = False
        # Trio time of each socket's opening, the latest first out: how fast clients connect.
        self.connected_at: deque[float] = deque(maxlen=CONNECTS_KEPT)

    def subscribe(self, account: str) -> tuple[Subscriber, trio.MemoryReceiveChannel[str]]:
        send, receive = trio.open_memory_channel[str](QUEUE_SIZE)
        sub = Subscriber(account, send)
        self._subs.setdefault(account, set()).add(sub)
        self.connected_at.append(trio.current_time())
        return sub, receive

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.get(sub.account, set()).discard(sub)
        sub.send.close()

    def count(self, account: str | None = None) -> int:
        if account is not None:
            return len(self._subs.get(account, ()))
        return sum(len(s) for s in self._subs.values())

    def publish(self, account: str, frame: str) -> None:
        if self.stalled:
            return
        for sub in list(self._subs.get(account, ())):
            try:
                sub.send.send_nowait(frame)
            except trio.WouldBlock:
                self._drop(sub, CLOSE_SLOW, "slow consumer")
            except trio.ClosedResourceError:
                self._subs[account].discard(sub)

    def close_account(self, account: str, code: int, reason: str) -> None:
        for sub in list(self._subs.get(account, ())):
            self._drop(sub, code, reason)

    def close_all(self, code: int, reason: str) -> None:
        for account in list(self._subs):
            self.close_account(account, code, reason)

    def _drop(self, sub: Subscriber, code: int, reason: str) -> None:
        self._subs.get(sub.account, set()).discard(sub)
        sub.close(code, reason)


async def pump(
    hub: TickerHub,
    receive: trio.MemoryReceiveChannel[str],
    send_text: Callable[[str], Awaitable[None]],
    send_bytes: Callable[[bytes], Awaitable[None]],
) -> None:
    """The one writer of a socket: frames in order, a heartbeat each second (the one due during a
    stall goes out when it is cleared, as a stalled link delivers it late); returns at close."""
    next_beat = trio.current_time() + HEARTBEAT_S
    while True:
        frame: str | None = None
        with trio.move_on_at(next_beat):
            try:
                frame = await receive.receive()
            except trio.EndOfChannel:
                return
        if frame is not None:
            if not hub.stalled:
                await send_text(frame)
            continue
        if hub.stalled:  # a beat is due: it goes out as soon as the stall is cleared
            next_beat = trio.current_time() + STALL_CHECK_S
            continue
        next_beat = trio.current_time() + HEARTBEAT_S
        await send_bytes(HEARTBEAT)
