"""Nothing the venue reports is forgotten: every change is on disk before anyone hears of it.

The engine applies a request at once (no await point) and bumps its `version`. The keeper saves
in a worker thread, so the event loop never waits on the disk: a journal line of what changed
(fsync'd), or a whole snapshot after a reset or once the journal has grown past
`COMPACT_BYTES`. Changes made while a write is under way go into the next one (group commit).
Until the save that covers a change returns:

- the ticker frames it produced are held (`emit`), then published in their order;
- the REST answer waits (`durable`, awaited by the app before every response).

A write that fails (a full disk) is retried with backoff as a whole snapshot; meanwhile the venue
answers nothing it has not saved. Start: the loaded state is compacted into a fresh snapshot;
stop: a last snapshot.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import trio

from . import state
from .engine import Engine

log = logging.getLogger(__name__)

#: A journal longer than this is folded into a new snapshot at the next save.
COMPACT_BYTES = 4 << 20
#: How long the last snapshot at shutdown may take.
FINAL_WRITE_S = 5.0
RETRY_INITIAL_S, RETRY_MAX_S = 0.1, 2.0

Publish = Callable[[str, str], None]  # account, frame


class StateKeeper:
    def __init__(self, engine: Engine, path: str, publish: Publish) -> None:
        self._engine, self._path, self._publish = engine, path, publish
        self._files = state.StateFiles(path)
        self._seq = 0
        self._saved = engine.version
        self._saved_event = trio.Event()
        self._held: deque[tuple[int, str, str]] = deque()  # version, account, frame
        self._needs_snapshot = False

    def emit(self, account: str, frame: str) -> None:
        """Publish `frame` once the change that produced it (the engine's latest) is saved."""
        if self._saved >= self._engine.version:
            self._publish(account, frame)
        else:
            self._held.append((self._engine.version, account, frame))

    async def durable(self) -> None:
        """Return once every change made so far is on disk."""
        target = self._engine.version
        while self._saved < target:
            await self._saved_event.wait()

    async def run(self, seq: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                  ) -> None:
        """Save until cancelled, then once more; `seq`: the loaded state's sequence number."""
        self._seq = seq
        self._engine.take_changes()  # what was loaded is in the first snapshot
        await self._write_snapshot()
        task_status.started()
        try:
            delay, saved = RETRY_INITIAL_S, True
            while True:
                if saved:
                    await self._engine.wait_changed()
                saved = await self._save()
                if not saved:
                    await trio.sleep(delay)
                delay = RETRY_INITIAL_S if saved else min(delay * 2, RETRY_MAX_S)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(FINAL_WRITE_S):
                try:
                    await self._write_snapshot()
                except OSError:
                    log.exception("venue state file %s: could not write it at shutdown",
                                  self._path)
                await trio.to_thread.run_sync(self._files.close)

    async def _save(self) -> bool:
        """Save what changed; False (logged) when the disk refused."""
        changes = self._engine.take_changes()
        if not (changes.reset or changes.orders or changes.positions or self._needs_snapshot):
            self._mark_saved(changes.version)
            return True
        try:
            if changes.reset or self._needs_snapshot or (
                    self._files.journal_bytes > COMPACT_BYTES):
                await self._write_snapshot()
            else:
                self._seq += 1
                line = state.delta(self._engine, changes, self._seq)
                await trio.to_thread.run_sync(self._files.append, line)
                self._mark_saved(changes.version)
        except OSError:
            log.exception("venue state file %s: could not write it; retrying", self._path)
            self._needs_snapshot = True  # these changes were taken: the next save has them all
            return False
        return True

    async def _write_snapshot(self) -> None:
        self._seq += 1
        version = self._engine.version
        doc = state.dump(self._engine, self._seq)
        await trio.to_thread.run_sync(self._files.write_snapshot, doc)
        self._needs_snapshot = False
        self._mark_saved(version)

    def _mark_saved(self, version: int) -> None:
        self._saved = max(self._saved, version)
        while self._held and self._held[0][0] <= self._saved:
            _, account, frame = self._held.popleft()
            self._publish(account, frame)
        self._saved_event.set()
        self._saved_event = trio.Event()
