"""One task reads every ticker socket of the process (`TickerReader`), so that a heartbeat
wakes nobody.

Each account's ticker carries a 1-byte heartbeat a second and, most of the day, nothing else.
With a task per connection each heartbeat was a task wake-up, a trip through the consumer's
coroutines, a deadline pushed and the socket re-armed in trio's epoll (one-shot), and trio
sized its epoll buffer by the number of sockets. Here the sockets sit in one level-triggered
`select.epoll` of ours, whose descriptor the reader's task waits on in trio: a wake-up reads
every ready socket once (at most 64 KiB each: a flooding peer gets a turn like the others),
parses it (`WebSocket.pump`), absorbs heartbeats and wakes a connection's consumer only for a
message, a control frame, a fault or the end. A consumer that falls behind has its socket
left unread (not polled) until it has caught up; the silence of a socket left unread is not
a stall. Stalls are found here as well: per stall timeout, the connections in the order they
were last heard from, so a round looks at the oldest only.

Isolation: the reader only reads and parses, never writes nor awaits on one socket; a socket
that fails (reset, bad TLS, protocol fault, even a bug in the parse) ends that connection
alone. If the task itself ends, every connection is told so (and reconnects).

Measured on the 2-core VM the helpers share (loaded: load average 5-9), process CPU from
/proc: a process wake-up alone costs 120-340 us there, the reading of a heartbeat a few. The
ticker path alone, 1,000 connections beaten once a second by a bare server: 69 us per
connection per second read by their own consumers, 35 with this reader (rounds 5 ms apart),
30 with 20 ms. The gateway with 1,000 idle paper accounts (`bench/accounts.py`): 61-74 ->
41 us per account per second, 48 wake-ups a second instead of about 1,000.

Linux (epoll) only, as trio's own I/O here is; elsewhere each consumer reads its own socket.
"""

from __future__ import annotations

import logging
import math
import select
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ._ws_client import CLOSE_ABNORMAL, ConnectionClosed, Stalled, WebSocket

__all__ = ["TickerReader", "open_ticker_reader", "shared_reading"]

log = logging.getLogger("brokers.kite")

MAX_EVENTS = 1024  # sockets read per round; more ready ones are read in the next round
#: While sockets get ready more often than this, the reader reads them in rounds this far
#: apart: at most this much latency added to an order update, for one wake-up of the process
#: per round instead of one per heartbeat (a wake-up costs more than the reading, measured).
GATHER_S = 0.005


def shared_reading() -> bool:
    """Whether this platform can share a reader (Linux: epoll)."""
    return hasattr(select, "epoll")


class _Entry:
    __slots__ = ("ws", "fd", "quiet", "paused")

    def __init__(self, ws: WebSocket, fd: int, quiet: OrderedDict[WebSocket, float] | None):
        self.ws = ws
        self.fd = fd
        self.quiet = quiet  # its stall group (None: no stall timeout)
        self.paused = False


class TickerReader:
    """Reads the websockets `add`ed to it while `run` runs (restartable: a supervisor may
    run it again; the connections it had were told it stopped)."""

    def __init__(self, gather_s: float = GATHER_S) -> None:
        self._gather_s = gather_s
        self._epoll = select.epoll()
        self._by_fd: dict[int, _Entry] = {}
        self._entries: dict[WebSocket, _Entry] = {}
        # per stall timeout: connection -> when it was last heard (or resumed), oldest first
        self._quiet: dict[float, OrderedDict[WebSocket, float]] = {}
        self._next_check = math.inf
        self._waiting = trio.CancelScope()  # the run's wait, whose deadline a new check moves

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, ws: WebSocket) -> None:
        """Read `ws` from now on (it detaches itself when it closes)."""
        fd = ws.fileno()
        quiet = None
        if ws.stall_timeout_s is not None:
            quiet = self._quiet.setdefault(ws.stall_timeout_s, OrderedDict())
            quiet[ws] = now = trio.current_time()
            self._check_by(now + ws.stall_timeout_s)
        entry = _Entry(ws, fd, quiet)
        self._epoll.register(fd, select.EPOLLIN)
        self._by_fd[fd] = self._entries[ws] = entry
        ws.reader = self
        if ws.incoming.items or ws.done_reading:  # frames that came with the handshake
            self._pause(entry)

    def remove(self, ws: WebSocket) -> None:
        entry = self._entries.pop(ws, None)
        ws.reader = None
        if entry is None:
            return
        del self._by_fd[entry.fd]
        if entry.quiet is not None:
            entry.quiet.pop(ws, None)
        try:
            self._epoll.unregister(entry.fd)
        except (OSError, ValueError):
            pass  # already closed: the kernel dropped it

    def caught_up(self, ws: WebSocket) -> None:
        """The consumer has taken everything: read its socket again, if it was left."""
        entry = self._entries.get(ws)
        if entry is None or not entry.paused or ws.done_reading:
            return
        self._epoll.modify(entry.fd, select.EPOLLIN)
        entry.paused = False
        if entry.quiet is not None:
            entry.quiet[ws] = now = trio.current_time()  # silence counts from here
            assert ws.stall_timeout_s is not None
            self._check_by(now + ws.stall_timeout_s)

    def _check_by(self, when: float) -> None:
        if when < self._next_check:
            self._next_check = when
            self._waiting.deadline = min(self._waiting.deadline, when)

    def _pause(self, entry: _Entry) -> None:
        if not entry.paused:
            self._epoll.modify(entry.fd, 0)
            entry.paused = True
            if entry.quiet is not None:
                entry.quiet.pop(entry.ws, None)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read until cancelled. While sockets get ready more often than every `gather_s`,
        rounds are paced `gather_s` apart (one wake-up a round, however many sockets it
        reads); a paced round that finds nothing ready goes back to waiting for the next."""
        task_status.started()
        last, paced = -math.inf, False
        try:
            while True:
                with trio.CancelScope(deadline=self._next_check) as self._waiting:
                    if paced:
                        self._waiting.deadline = min(last + self._gather_s, self._next_check)
                        await trio.sleep_forever()
                    else:
                        await trio.lowlevel.wait_readable(self._epoll.fileno())
                now = trio.current_time()
                read = self._round(now)
                paced = read > 0 and (paced or now - last < self._gather_s)
                last = now
                if now >= self._next_check:
                    self._next_check = self._stalls(now)
        finally:
            for ws in list(self._entries):
                self._end(ws, ConnectionClosed(CLOSE_ABNORMAL, "the ticker reader stopped"))

    def _round(self, now: float) -> int:
        """Read every ready socket once; how many were ready."""
        by_fd = self._by_fd
        ready = self._epoll.poll(0, MAX_EVENTS)
        for fd, _ in ready:
            entry = by_fd.get(fd)
            if entry is None:
                continue
            ws = entry.ws
            try:
                news = ws.pump()
            except Exception as exc:  # one connection's fault must not stop the others
                log.exception("ticker reader: a connection failed")
                self._end(ws, ConnectionClosed(CLOSE_ABNORMAL, f"read failed: {exc!r}"))
                continue
            quiet = entry.quiet
            if quiet is not None:
                quiet[ws] = now
                quiet.move_to_end(ws)
            if news:
                if ws.done_reading or ws.incoming.backlogged():
                    self._pause(entry)
                ws.news.unpark_all()
        return len(ready)

    def _stalls(self, now: float) -> float:
        """End the connections silent past their timeout; when to look next."""
        next_check = math.inf
        for timeout, quiet in self._quiet.items():
            stalled = []
            for ws, since in quiet.items():
                if now - since < timeout:
                    next_check = min(next_check, since + timeout)
                    break
                stalled.append(ws)
            for ws in stalled:
                self._end(ws, Stalled(timeout))
        return next_check

    def _end(self, ws: WebSocket, why: ConnectionClosed) -> None:
        """Stop reading `ws`; its consumer hears `why`."""
        if ws.lost is None:
            ws.lost = why
        entry = self._entries.get(ws)
        if entry is not None:
            self._pause(entry)
        ws.news.unpark_all()

    def close(self) -> None:
        if self._epoll.closed:
            return
        trio.lowlevel.notify_closing(self._epoll.fileno())
        self._epoll.close()


@asynccontextmanager
async def open_ticker_reader() -> AsyncIterator[TickerReader]:
    """A reader running in its own task for the block's duration (tests, a lone tool; the
    service runs its one reader under its supervisor)."""
    reader = TickerReader()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(reader.run)
            yield reader
            nursery.cancel_scope.cancel()
    finally:
        reader.close()
