"""One pace for every upstream connect of the process: a token bucket and a cap in flight.

At start every account opens its ticker socket, and when a shared upstream comes back every
account reconnects within its backoff jitter: ten thousand accounts would open ten thousand
sockets to the broker in one burst (a broker throttles that, and the handshakes' CPU starves
everything else). So the accounts share one `ConnectPacer`, owned by the service: a connect
waits for a token (at most `rate_per_s`, `burst` at once; one that has to wait is spread by
up to one interval of jitter) and for one of `in_flight` slots, held until its handshake is done.

The bucket is kept as the time its next token is free (GCRA): no task refills it and
waiters are served in the order they asked.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

__all__ = ["ConnectPacer"]


class ConnectPacer:
    """`async with pacer.connecting():` around a connect's handshake."""

    def __init__(
        self, rate_per_s: float, in_flight: int, *, burst: int = 1,
        rng: random.Random | None = None,
    ) -> None:
        if rate_per_s <= 0 or in_flight < 1 or burst < 1:
            raise ValueError("rate_per_s > 0, in_flight >= 1 and burst >= 1")
        self._interval = 1.0 / rate_per_s
        self._burst = burst
        self._slots = trio.CapacityLimiter(in_flight)
        self._free_at = -float("inf")  # when the bucket's next token is due
        self._random = rng or random.Random()
        self.connects = 0  # connects admitted (for health and tests)

    def _reserve(self) -> float:
        """Take the next token: how long to wait for it, jitter included when it is not free
        at once (a lone reconnect goes straight on; a crowd is spread)."""
        now = trio.current_time()
        due = max(self._free_at, now)
        self._free_at = due + self._interval
        wait = due - now - (self._burst - 1) * self._interval
        if wait <= 0:
            return 0.0
        return wait + self._random.uniform(0.0, self._interval)

    @asynccontextmanager
    async def connecting(self) -> AsyncIterator[None]:
        """Wait for a slot and a token; the slot is held until the block ends."""
        async with self._slots:
            await trio.sleep(self._reserve())
            self.connects += 1
            yield

    def statistics(self) -> dict[str, int]:
        stats = self._slots.statistics()
        return {"connects": self.connects, "in_flight": stats.borrowed_tokens,
                "waiting": stats.tasks_waiting}
