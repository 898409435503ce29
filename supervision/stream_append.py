"""[cluster]: the owner appends each committed update of an account to the account's Redis stream.

Keys share the account's hash tag with its lease (one slot: Redis Cluster works):
`{<prefix>:acct:<id>}:updates`, a stream whose entry `<seq>-0` holds the order frame of that seq
exactly as local subscribers get it (field `m`), and `<seq>-<n>` (n >= 1) a status frame sent
after it; `{<prefix>:acct:<id>}:upstream` the latest status frame. Trimmed to about the replay
buffer's size (MAXLEN ~). Other nodes serve their subscribers from it (stream_feeds.py).

The stream always holds a run of consecutive seqs. One script call appends a run only if it
follows the stream's last seq (entries the stream has already are skipped: a former owner's late
append changes nothing); otherwise it answers the stream's last seq and the appender first fills
the missing seqs from the store (when more are missing than the stream keeps, the stream is
started over). That one rule covers an owner that died between commit and append, an append
that failed, and a Redis restarted empty: the next append finds the gap and fills it first.

Never in the actor's way: the actor's `tap` only queues the frame (a bounded deque: past the
replay size the oldest go, and the store fills them in), and the appender task sends what is
queued in one call, again after a failure with backoff. A failed append never fails the actor.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import trio

from actors.account import frames_between
from actors.backoff import Backoff
from store import Store, StoreError

from .lease import REDIS_ERRORS

__all__ = ["StreamAppender", "stream_key", "upstream_key"]

log = logging.getLogger("orderdesk.cluster")

#: KEYS: stream, upstream. ARGV: cap, mode ('a' append, 'f' fill: a gap starts the stream
#: over), status frame or '', first seq expected, then seq and frame pairs. Returns the
#: stream's last seq and 1, or its last seq and 0 when the run does not follow it (nothing
#: written).
_APPEND = """
local top = redis.call('xrevrange', KEYS[1], '+', '-', 'COUNT', 1)
local last, lastid, sub = 0, '0', 0
if top[1] then
  local id = top[1][1]
  local dash = string.find(id, '-', 1, true)
  lastid = string.sub(id, 1, dash - 1)
  last = tonumber(lastid)
  sub = tonumber(string.sub(id, dash + 1))
end
if last < tonumber(ARGV[4]) - 1 then
  if ARGV[2] ~= 'f' then return {last, 0} end
  redis.call('del', KEYS[1])
  last, lastid, sub = 0, '0', 0
end
for i = 5, #ARGV, 2 do
  if tonumber(ARGV[i]) > last then
    redis.call('xadd', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i] .. '-0', 'm', ARGV[i + 1])
    last, lastid, sub = tonumber(ARGV[i]), ARGV[i], 0
  end
end
if ARGV[3] ~= '' then
  redis.call('set', KEYS[2], ARGV[3])
  redis.call('xadd', KEYS[1], 'MAXLEN', '~', ARGV[1], lastid .. '-' .. (sub + 1), 'm', ARGV[3])
end
return {last, 1}
"""
#: Seqs per script call when filling from the store.
_FILL_CHUNK = 500


class _Unfilled(Exception):
    """The store did not have every seq the stream lacked (tried again later)."""


def stream_key(prefix: str, account: str) -> str:
    return f"{{{prefix}:acct:{account}}}:updates"


def upstream_key(prefix: str, account: str) -> str:
    return f"{{{prefix}:acct:{account}}}:upstream"


class StreamAppender:
    """Appends one account's committed frames to its stream while this node owns it: `tap` is
    the actor's (`AccountActor.tap`), `run` the task that sends."""

    def __init__(self, client: object, prefix: str, account: str, store: Store,
                 cap: int) -> None:
        self._client = client
        self._script = client.register_script(_APPEND)  # type: ignore[attr-defined]
        self._keys = [stream_key(prefix, account), upstream_key(prefix, account)]
        self.account = account
        self._store = store
        self._cap = max(1, cap)
        #: (seq, frame, when committed: monotonic) not yet appended, oldest first.
        self._pending: deque[tuple[int, str, float]] = deque(maxlen=self._cap)
        self._status: str | None = None  # a status frame not yet appended
        self._last_status = ""  # the latest status frame (sent again after a fill)
        self._wake = trio.Event()
        self.committed = 0  # the last seq the actor committed, as far as known here
        self.appended = 0  # the stream's last seq, as the last call found it
        self.errors = 0  # calls that failed (Redis down, a timeout)
        self.fills = 0  # gaps filled from the store
        self.appends = 0  # seqs appended by this node

    def tap(self, seq: int | None, frame: str) -> None:
        """The actor's: queue a committed order frame (`seq`) or a status frame (None)."""
        if seq is None:
            self._status = self._last_status = frame
        else:
            self._pending.append((seq, frame, time.monotonic()))
            self.committed = seq
        self._wake.set()

    def lag_s(self) -> float:
        """How long the oldest update not yet appended has waited (0: none waits)."""
        return time.monotonic() - self._pending[0][2] if self._pending else 0.0

    async def run(self, committed: int, status: str) -> None:
        """Until cancelled: make the stream reach `committed` (the actor's seq once loaded),
        with `status` (its upstream's status frame), then append what the actor commits."""
        self.committed = max(self.committed, committed)
        if self._status is None:
            self._status = self._last_status = status
        backoff = Backoff(0.1, 2.0)
        while True:
            self._wake = trio.Event()
            try:
                await self._send()
            except (*REDIS_ERRORS, StoreError, _Unfilled) as exc:
                self.errors += 1
                log.warning("account %s: cannot append to its stream (%d waiting): %s",
                            self.account, len(self._pending), exc)
                await trio.sleep(backoff.next())
                continue
            backoff.reset()
            if not self._pending and self._status is None:
                await self._wake.wait()

    async def _send(self) -> None:
        """Append what is queued; a gap before it is filled from the store first."""
        entries = list(self._pending)
        status = self._status
        first = entries[0][0] if entries else self.committed + 1
        last, ok = await self._call("a", status, first, [(s, f) for s, f, _ in entries])
        if not ok:  # the stream ends before `first`: fill in what it lacks, then append
            await self._fill(last, first - 1)
            status = self._status = self._last_status  # the upstream key may be gone too
            last, ok = await self._call("a", status, first, [(s, f) for s, f, _ in entries])
            if not ok:
                raise _Unfilled(f"the stream still ends at seq {last}")
        self.appended = last
        while self._pending and self._pending[0][0] <= last:
            self._pending.popleft()
            self.appends += 1
        if self._status is status:
            self._status = None

    async def _fill(self, after: int, upto: int) -> None:
        """Seqs `after` < seq <= `upto` from the store (the last `cap` of them at most)."""
        start = max(after, upto - self._cap)
        self.fills += 1
        log.warning("account %s: its stream ends at seq %d: filling %d..%d from the store",
                    self.account, after, start + 1, upto)
        while start < upto:
            end = min(upto, start + _FILL_CHUNK)
            frames = await frames_between(self._store, self.account, start, end)
            if not frames:  # not in the store (pruned): the stream starts after them
                return
            await self._call("f", None, frames[0][0], frames)
            start = frames[-1][0]

    async def _call(self, mode: str, status: str | None, first: int,
                    entries: list[tuple[int, str]]) -> tuple[int, bool]:
        args: list[object] = [self._cap, mode, status or "", first]
        for seq, frame in entries:
            args += [seq, frame]
        last, ok = await self._script(keys=self._keys, args=args)
        return int(last), bool(ok)
