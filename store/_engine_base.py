"""The part of a `Store` that is the same on both engines: the group-committed append and the
health report.

An engine's store class mixes `Engine` in with its own parts; it builds `_committer` on its
`_write_round` and supplies `_ping` (one round trip) and `_health_extra` (its own gauges).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import trio

from .base import HEALTH_TIMEOUT_S, Json, StoreError, order_fields
from .group_commit import GroupCommitter


class Engine:
    """Base of `PostgresStore` and `SqliteStore`."""

    engine: str
    _committer: GroupCommitter

    async def append_events(self, account: str, orders: Sequence[Json]) -> list[int]:
        """Commit `orders` as the next events of `account` (group commit); returns their seqs."""
        for payload in orders:
            order_fields(payload)  # reject a bad payload before it can fail a whole round
        if not orders:
            return []
        return await self._committer.append(account, list(orders))

    async def health(self) -> Json:
        """Round-trip `SELECT 1`; reports instead of raising, so /health always answers."""
        timeout = HEALTH_TIMEOUT_S
        started = time.perf_counter()
        error = None
        with trio.move_on_after(timeout) as scope:
            try:
                await self._ping()
            except StoreError as exc:
                error = str(exc)
        if scope.cancelled_caught:
            error = f"no answer within {timeout}s"
        return {
            "engine": self.engine,
            "ok": error is None,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
            "pending_commits": self._committer.pending(),
            **self._health_extra(),
            "error": error,
        }

    async def _ping(self) -> None:
        """One `SELECT 1` round trip to the database."""
        raise NotImplementedError

    def _health_extra(self) -> Json:
        """The engine's own gauges for `health()`."""
        raise NotImplementedError
