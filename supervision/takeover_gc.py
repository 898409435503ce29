"""[cluster] The cyclic garbage collector held off while this node takes accounts over.

A takeover allocates in a burst on one event loop: the accounts' books loaded, their listings
parsed, their subscribers back. The collector's passes over those young objects (and a full one
over the whole heap), 2-80 ms each, took about 0.3-0.4 s of the 1-1.5 s from "owned" to "every
subscriber has the next update" at 200 accounts (bench/failover.py on 2 shared cores).
Refcounting still frees all that is not a cycle; the collector is turned on again `hold_s` after
the last round that took accounts once no reconcile after a connect is pending in the process
(the takeover's listings: on a busy node they outlast `hold_s`), and `max_s` after it was turned
off at the latest; it is left alone if something else had turned it off.
"""

from __future__ import annotations

import gc
import math

import trio

from actors.account.reconnect import reconciles_settled

__all__ = ["CollectorHold"]


class CollectorHold:
    """The acquirer tells it of each round that took accounts (`takeover`); `run` holds."""

    def __init__(self, hold_s: float = 2.0, max_s: float = 10.0) -> None:
        self.hold_s = hold_s
        self.max_s = max_s
        self._until = -math.inf
        self._wake = trio.Event()
        self.holds = 0  # times the collector was held off

    def takeover(self) -> None:
        self._until = trio.current_time() + self.hold_s
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled: the collector off from a takeover until `hold_s` after the last."""
        while True:
            await self._wake.wait()
            if gc.isenabled():
                self.holds += 1
                gc.disable()
                try:
                    latest = trio.current_time() + self.max_s
                    while True:  # a takeover meanwhile moves `_until` on
                        end = min(self._until, latest)
                        if trio.current_time() >= end:
                            break
                        await trio.sleep_until(end)
                    # and the listings of the accounts taken (a busy node is slower)
                    await reconciles_settled(max(0.0, latest - trio.current_time()))
                finally:
                    gc.enable()
            self._wake = trio.Event()
