"""Exponential backoff, the one rule every retry loop of the service uses.

Delay number n (0-based) is `initial × multiplier^n`, capped at `maximum`; callers add their own
jitter (reconnects and restarts add up to a few seconds, webhooks stretch by a fraction) and
sleep with `trio.sleep` or wait on an event with `trio.move_on_after`, so `autojump_clock`
collapses the waits in tests.

Not stamina: it retries a call that raises, sleeping between attempts on its own; our loops
reset the delay once a connection came up, wait on an event that cuts the delay short (new
credentials, a kill switch), check a deadline before waiting, and log the next delay. stamina
would fit none of those without bending; this is twelve lines.
"""

from __future__ import annotations

import math

import attrs

__all__ = ["Backoff", "backoff_delay"]


def backoff_delay(attempt: int, initial: float, maximum: float, multiplier: float = 2.0) -> float:
    """The delay before retry number `attempt` (0-based): exponential, capped at `maximum`."""
    try:
        base = initial * multiplier**attempt
    except OverflowError:
        base = math.inf
    return min(base, maximum)


@attrs.define
class Backoff:
    """The delays of one retry loop: `peek()` the next one, `next()` takes it, `reset()` after
    a success starts again from `initial`."""

    initial: float
    maximum: float
    multiplier: float = 2.0
    attempt: int = 0

    def peek(self) -> float:
        return backoff_delay(self.attempt, self.initial, self.maximum, self.multiplier)

    def next(self) -> float:
        delay = self.peek()
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0
