"""Store writes that must land: each row's latest state, retried until stored.

A slow store must cost throughput, never safety. A rollback cannot wait on a write to place a
reverse order, and a batch's final status must not be dropped because one write timed out. So
every write of a batch (its legs, reverse orders, the batch row) goes through `StoreWrites`: a
row has at most one writer task, which writes the row's *latest* state (an older state not yet
stored is superseded, never written after a newer one) and retries with backoff until it is
stored. Callers wait up to a bound of their choosing, then carry on.

The writer tasks live in the nursery of `run()`, which the coordinator starts in its own: they
are bounded by shutdown (`idle()` lets a drain wait for them). A write still unstored when the
process stops leaves its batch unfinished in the store; recovery at the next start resolves it
against the broker by tag.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable

import attrs
import trio

from store import FencedOut, NotFound, StoreError

log = logging.getLogger("actors.batch")

Write = Callable[[], Awaitable[None]]
LatencyHook = Callable[[float], None]


@attrs.define(eq=False)
class _Row:
    write: Write
    version: int = 1  # of the latest state put
    stored: int = 0  # the version stored last
    changed: trio.Event = attrs.field(factory=trio.Event)  # set (and replaced) at each store


class StoreWrites:
    """Coalescing, retried writes keyed by row. `put` never waits; `wait` waits a bound."""

    def __init__(
        self, attempt_timeout_s: float, *, retry_initial_s: float = 0.05,
        retry_max_s: float = 1.0, on_latency: LatencyHook | None = None,
    ) -> None:
        self._attempt_timeout_s = attempt_timeout_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._on_latency = on_latency
        self._rows: dict[Hashable, _Row] = {}
        self._new: list[Hashable] = []  # rows put since the last wake-up: need a writer task
        self._wake = trio.Event()
        self._idle = trio.Event()
        self._idle.set()
        self._latency_s = 0.0  # moving average of one write attempt

    @property
    def latency_s(self) -> float:
        """Recent duration of one write attempt (a moving average; failed attempts count)."""
        return self._latency_s

    def pending(self) -> int:
        """Rows whose latest state is not stored yet."""
        return len(self._rows)

    def put(self, key: Hashable, write: Write) -> int:
        """Make `write` the row's latest state; the version to `wait` for."""
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = _Row(write)
            self._new.append(key)
            self._idle = trio.Event() if self._idle.is_set() else self._idle
            self._wake.set()
        else:
            row.write = write
            row.version += 1
        return row.version

    async def wait(self, key: Hashable, version: int, bound: float) -> bool:
        """Wait up to `bound` seconds for `version` of the row (or a later one) to be stored."""
        with trio.move_on_after(bound):
            while True:
                row = self._rows.get(key)
                if row is None or row.stored >= version:
                    return True
                await row.changed.wait()
        return False

    async def write(self, key: Hashable, write: Write, bound: float) -> bool:
        """`put`, then `wait` up to `bound`: True when stored within it."""
        return await self.wait(key, self.put(key, write), bound)

    async def idle(self) -> None:
        """Until every row put so far is stored (or given up)."""
        await self._idle.wait()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start a writer task for each new row until cancelled."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                new, self._new = self._new, []
                for key in new:
                    nursery.start_soon(self._flush, key)

    async def _flush(self, key: Hashable) -> None:
        row = self._rows[key]
        delay = self._retry_initial_s
        failures = 0
        while row.stored < row.version:
            version = row.version
            started = time.perf_counter()
            try:
                with trio.fail_after(self._attempt_timeout_s):
                    await row.write()
            except (NotFound, FencedOut) as exc:  # gone, or another node owns it: no retry
                # can store it
                log.error("store write %s given up: %s", key, exc)
            except (StoreError, trio.TooSlowError) as exc:
                failures += 1
                self._latency(started)
                log.warning("store write %s failed (attempt %d): %r; retrying in %.2f s",
                            key, failures, exc, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            except Exception:  # a bug, not the store: logged, not retried forever
                log.exception("store write %s given up", key)
            else:
                self._latency(started)
                if failures:
                    log.info("store write %s stored after %d failed attempts", key, failures)
            row.stored = version
            row.changed.set()
            row.changed = trio.Event()
        del self._rows[key]
        if not self._rows:
            self._idle.set()

    def _latency(self, started: float) -> None:
        elapsed = time.perf_counter() - started
        self._latency_s += (elapsed - self._latency_s) * 0.2
        if self._on_latency is not None:
            self._on_latency(elapsed)
