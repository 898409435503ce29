"""One long-lived thread that owns the sqlite3 connection.

sqlite3 blocks, so every call runs as a job on this thread (never on the Trio thread), and one
thread means one connection and no lock contention inside the process. A caller cancelled while
its job is still queued drops it and returns at once (the thread skips it later); while it runs,
a progress handler aborts the statement and the caller waits for the job's transaction to roll
back, so cancellation never leaves half a write behind.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs
import trio

from .base import StoreError, StoreUnavailable

T = TypeVar("T")


@attrs.define(eq=False)
class _Job(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    done: trio.Event = attrs.field(factory=trio.Event)
    cancelled: bool = False
    started: bool = False  # the thread took it; `cancelled` and `started` change under `_claim`
    result: T | None = None
    error: BaseException | None = None


class SqliteWorker:
    """Runs `fn(connection)` jobs one at a time on a dedicated thread."""

    def __init__(self, connect: Callable[[], sqlite3.Connection]) -> None:
        self._connect = connect
        self._jobs: queue.SimpleQueue[_Job[object] | None] = queue.SimpleQueue()
        self._current: _Job[object] | None = None
        self._claim = threading.Lock()  # a queued job is either started or cancelled, not both
        self._token = trio.lowlevel.current_trio_token()
        self._stopped = trio.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._main, name="orderdesk-sqlite", daemon=True)
        self._thread.start()

    def pending(self) -> int:
        """Jobs waiting for the thread (approximate)."""
        return self._jobs.qsize()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the worker thread and return its result; cancellable at any point."""
        if self._closed:
            raise StoreUnavailable("store is closed")
        job: _Job[T] = _Job(fn)
        self._jobs.put(job)  # type: ignore[arg-type]
        try:
            await job.done.wait()
        finally:
            if not job.done.is_set():
                with self._claim:
                    job.cancelled = True
                    running = job.started
                if running:  # aborted by the progress handler; wait for its rollback
                    with trio.move_on_after(5, shield=True):
                        await job.done.wait()
                # else still queued: the thread will skip it, nothing to wait for
        if job.error is not None:
            raise job.error
        return job.result  # type: ignore[return-value]

    async def aclose(self) -> None:
        """Finish queued jobs, close the connection and join the thread."""
        if not self._closed:
            self._closed = True
            self._jobs.put(None)
        with trio.move_on_after(10, shield=True):
            await self._stopped.wait()

    # ------------------------------------------------------------------ on the worker thread

    def _main(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = self._connect()
            conn.set_progress_handler(self._should_abort, 1000)
        except sqlite3.Error as exc:
            failure: BaseException = StoreUnavailable(f"cannot open sqlite: {exc}")
            failure.__cause__ = exc
        else:
            failure = StoreUnavailable("store is closed")
        try:
            while (job := self._jobs.get()) is not None:
                with self._claim:
                    job.started = not job.cancelled
                if conn is None or not job.started:
                    job.error = failure if conn is None else StoreError("cancelled")
                else:
                    self._current = job
                    try:
                        job.result = job.fn(conn)
                    except StoreError as exc:
                        job.error = exc
                    except sqlite3.Error as exc:
                        job.error = StoreError(f"sqlite: {exc}")
                        job.error.__cause__ = exc
                    except Exception as exc:
                        job.error = StoreError(f"sqlite job failed: {exc!r}")
                        job.error.__cause__ = exc
                    finally:
                        self._current = None
                self._notify(job.done.set)
        finally:
            if conn is not None:
                conn.close()
            self._notify(self._stopped.set)

    def _should_abort(self) -> int:
        job = self._current
        return 1 if job is not None and job.cancelled else 0

    def _notify(self, fn: Callable[[], object]) -> None:
        try:
            self._token.run_sync_soon(fn)
        except trio.RunFinishedError:
            pass
