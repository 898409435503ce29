"""A lean websocket client (RFC 6455, client side) for the Kite ticker, and for nothing else.

Why not trio-websocket here: per connection it runs a reader task that feeds wsproto and hands
each message to the consumer over a memory channel, so each frame costs a wake-up of that
reader, wsproto's event machinery, a channel hop and then a wake-up of the consumer. The ticker
of an idle account carries nothing but a 1-byte heartbeat a second, and at thousands of idle
accounts that path is almost all of the gateway's idle CPU. Here a connection is read either
by one shared reader for every connection of the process (`TickerReader`, `ticker_reader`: the
heartbeat is absorbed there and wakes nobody; a message wakes this connection's consumer), or,
with no reader, by the consumer's own `get_message`. Pings and the peer's close are answered
by the consumer, in order, bounded; the reader never writes.

Measured with `bench/accounts.py`: see `ticker_reader`'s docstring.

Ticker only: one consumer, no extensions (no permessage-deflate), no subprotocol, text and
binary messages (fragmented ones too) up to `max_message` bytes. A protocol error closes with
1002 (oversized: 1009, bad UTF-8: 1007) and raises `ConnectionClosed`; silence past the
reader's stall timeout raises `Stalled`. The web layer and the paper venue (the server side)
keep hypercorn / trio-websocket.
"""

from __future__ import annotations

import math
import os
import socket
import ssl
from typing import Protocol
from urllib.parse import urlsplit

import trio

from ._ws_handshake import (
    GUID,
    HandshakeError,
    HandshakeRejected,
    check_answer,
    new_key,
    read_answer,
    upgrade_request,
)
from ._ws_incoming import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Control,
    Incoming,
)
from ._ws_transport import Transport

__all__ = ["GUID", "OP_CLOSE", "OP_CONTINUATION", "OP_PING", "OP_PONG", "ConnectionClosed",
           "HandshakeError", "HandshakeRejected", "Stalled", "WebSocket", "connect"]

MAX_MESSAGE = 4 * 1024 * 1024
RECEIVE_SIZE = 65536
CLOSE_TIMEOUT_S = 1.0

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1002
CLOSE_NO_STATUS = 1005  # never sent: a close frame without a code
CLOSE_ABNORMAL = 1006  # never sent: the connection ended without a close frame
CLOSE_BAD_DATA = 1007


class ConnectionClosed(Exception):
    """The websocket is closed: `code` is the peer's close code, the one we closed with, or
    1006 when the connection ended without a close frame."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"{code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class Stalled(ConnectionClosed):
    """Nothing (not even a heartbeat) for `stall_timeout_s`: the connection is given up;
    `aclose` still says goodbye."""

    def __init__(self, stall_timeout_s: float) -> None:
        super().__init__(CLOSE_ABNORMAL, f"no frame for {stall_timeout_s:g} s")
        self.stall_timeout_s = stall_timeout_s


def valid_close_code(code: int) -> bool:
    """What a peer may send in a close frame (RFC 6455 7.4, plus the registered 1012-1014)."""
    return (1000 <= code <= 1014 and code not in (1004, 1005, 1006)) or 3000 <= code <= 4999


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final client frame, masked as RFC 6455 requires of a client."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    keys = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")
    return head + mask + masked


class Reader(Protocol):
    """What reads a websocket for its consumer (`ticker_reader.TickerReader`)."""

    def caught_up(self, ws: WebSocket) -> None: ...

    def remove(self, ws: WebSocket) -> None: ...


class WebSocket:
    """One open client websocket; `get_message` by one consumer, `send_message` by any task.
    Read by a `TickerReader` once `reader.add`ed to it, else by `get_message` itself."""

    def __init__(
        self, transport: Transport, buffered: bytes = b"", *,
        max_message: int = MAX_MESSAGE, close_timeout_s: float = CLOSE_TIMEOUT_S,
        absorb_heartbeats: bool = False, stall_timeout_s: float | None = None,
    ) -> None:
        self.transport = transport
        self.incoming = Incoming(max_message, absorb_heartbeats=absorb_heartbeats)
        self.incoming.feed(buffered)
        self._close_timeout_s = close_timeout_s
        self.stall_timeout_s = stall_timeout_s  # None: silence is never a fault
        self._send_lock = trio.StrictFIFOLock()
        self._close_sent = False
        self.closed: ConnectionClosed | None = None  # why it closed, once it has
        self.lost: ConnectionClosed | None = None  # why reading stopped (a reset, a stall)
        self.heard_at: float | None = None  # trio time bytes last arrived (heartbeats too)
        self.reader: Reader | None = None  # set by TickerReader.add
        self.news = trio.lowlevel.ParkingLot()  # the consumer waits here for the reader

    def fileno(self) -> int:
        return self.transport.fileno()

    def pump(self) -> bool:
        """Read what the socket has, once, without waiting, and parse it; True if the
        consumer has news (a message, a control frame, a fault or the end)."""
        try:
            data = self.transport.recv_nowait(RECEIVE_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.lost = ConnectionClosed(CLOSE_ABNORMAL, f"connection lost: {exc!r}")
            return True
        if data is None:
            return False
        if not data:
            self.lost = ConnectionClosed(CLOSE_ABNORMAL, "connection ended without a close frame")
            return True
        self.heard_at = trio.current_time()
        return self.incoming.feed(data)

    @property
    def done_reading(self) -> bool:
        return self.lost is not None or self.incoming.stopped

    async def get_message(self) -> str | bytes:
        """The next whole text (str) or binary (bytes) message; answers pings on the way.
        Raises ConnectionClosed once the connection is closed, by either side or by a fault."""
        incoming = self.incoming
        since = trio.current_time()  # read by us, silence counts from the later of this call
        while True:                  # and the last bytes: a busy consumer is no silent peer
            if self.closed is not None:
                raise ConnectionClosed(self.closed.code, self.closed.reason)
            if incoming.items:
                item = incoming.take()
                if not isinstance(item, Control):
                    return item
                await self._answer(item)
                continue
            if incoming.fault is not None:
                await self._fail(incoming.fault.code, incoming.fault.reason)
            elif isinstance(self.lost, Stalled):
                raise Stalled(self.lost.stall_timeout_s)  # not closed: aclose says goodbye
            elif self.lost is not None:
                await self._shut(self.lost)
            elif self.reader is not None:
                self.reader.caught_up(self)
                await self.news.park()
            else:
                await self._read_here(since)

    async def _read_here(self, since: float) -> None:
        """No reader: wait for the socket (at most until a stall) and read it ourselves."""
        deadline = math.inf
        if self.stall_timeout_s is not None:
            deadline = max(since, self.heard_at or since) + self.stall_timeout_s
        try:
            with trio.move_on_at(deadline) as watch:
                await trio.lowlevel.wait_readable(self.transport.sock)
        except trio.ClosedResourceError as exc:
            self.lost = ConnectionClosed(CLOSE_ABNORMAL, f"connection lost: {exc!r}")
            return
        if watch.cancelled_caught:
            assert self.stall_timeout_s is not None
            self.lost = Stalled(self.stall_timeout_s)
            return
        self.pump()

    async def _answer(self, control: Control) -> None:
        opcode, payload = control
        if opcode == OP_PING:
            if not await self._send_bounded(OP_PONG, payload):
                await self._shut(ConnectionClosed(CLOSE_ABNORMAL, "could not answer a ping"))
        else:
            await self._peer_closed(payload)

    async def send_message(self, message: str | bytes) -> None:
        """Send one text (str) or binary (bytes) message; ConnectionClosed once closed."""
        if isinstance(message, str):
            frame = encode_frame(OP_TEXT, message.encode("utf-8"))
        else:
            frame = encode_frame(OP_BINARY, bytes(message))
        async with self._send_lock:
            if self.closed is not None or self._close_sent:
                closed = self.closed or ConnectionClosed(CLOSE_NORMAL, "closing")
                raise ConnectionClosed(closed.code, closed.reason)
            try:
                await self.transport.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                raise ConnectionClosed(CLOSE_ABNORMAL, f"connection lost: {exc!r}") from exc

    async def _send_bounded(self, opcode: int, payload: bytes) -> bool:
        """A control frame, shielded (a cancel mid-frame would corrupt the stream) and bounded
        (a peer that does not read cannot hold us); False if it could not go out."""
        frame = encode_frame(opcode, payload)
        with trio.CancelScope(shield=True), trio.move_on_after(self._close_timeout_s):
            async with self._send_lock:
                if self._close_sent or self.closed is not None:
                    return False
                self._close_sent = opcode == OP_CLOSE
                try:
                    await self.transport.send_all(frame)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return False
                return True
        return False  # timed out: the peer does not read

    async def _peer_closed(self, payload: bytes) -> None:
        """The peer's close frame: answer it (echoing its code), close the transport."""
        code, reason = CLOSE_NO_STATUS, ""
        if len(payload) == 1:
            await self._fail(CLOSE_PROTOCOL, "close frame of 1 byte")
            return
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not valid_close_code(code):
                await self._fail(CLOSE_PROTOCOL, f"invalid close code {code}")
                return
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                await self._fail(CLOSE_BAD_DATA, "close reason is not UTF-8")
                return
        echo = (code if code != CLOSE_NO_STATUS else CLOSE_NORMAL).to_bytes(2, "big")
        await self._send_bounded(OP_CLOSE, echo)
        await self._shut(ConnectionClosed(code, reason))

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: our close frame (bounded), then the transport closed."""
        await self._send_bounded(OP_CLOSE, code.to_bytes(2, "big") + reason.encode()[:120])
        await self._shut(ConnectionClosed(code, reason))

    async def _shut(self, why: ConnectionClosed) -> None:
        if self.closed is None:
            self.closed = why
        self._detach()
        await trio.aclose_forcefully(self.transport)

    def _detach(self) -> None:
        if self.reader is not None:
            self.reader.remove(self)

    async def aclose(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """The close handshake: our close frame, then the peer's awaited for at most
        `close_timeout_s` (shielded: a cancelled owner still closes cleanly, and never for
        longer), then the transport closed. Messages still arriving are dropped."""
        self._detach()  # from here on we read the socket ourselves
        if self.closed is not None:
            await trio.aclose_forcefully(self.transport)
            return
        with trio.CancelScope(shield=True), trio.move_on_after(self._close_timeout_s):
            if await self._send_bounded(OP_CLOSE, code.to_bytes(2, "big") + reason.encode()):
                await self._drain()
        await self._shut(ConnectionClosed(code, reason or "closed by us"))

    async def _drain(self) -> None:
        """Read and drop messages until the peer's close frame, the end of the stream or a
        frame we cannot read."""
        incoming = self.incoming
        while True:
            while incoming.items:
                item = incoming.take()
                if isinstance(item, Control) and item[0] == OP_CLOSE:
                    return
            if self.done_reading:
                return
            await self._read_here(trio.current_time())


async def connect(
    url: str, *, ssl_context: ssl.SSLContext | None = None, max_message: int = MAX_MESSAGE,
    close_timeout_s: float = CLOSE_TIMEOUT_S, absorb_heartbeats: bool = False,
    stall_timeout_s: float | None = None,
) -> WebSocket:
    """Open `url` (ws:// or wss://) and do the upgrade handshake. The caller bounds the time
    (`trio.fail_after`). Raises OSError (no TCP connection), HandshakeRejected (a non-101
    answer: its status code) or HandshakeError (anything else wrong, TLS included).
    `absorb_heartbeats`: Kite's heartbeat (a binary message of one byte) is never returned;
    `stall_timeout_s`: that long without a byte, `get_message` raises `Stalled`."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a websocket URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = new_key()
    request = upgrade_request(target, parts.netloc.rpartition("@")[2], key)
    stream = await trio.open_tcp_stream(parts.hostname, port)
    sock = socket.socket(fileno=stream.socket.detach())
    transport = Transport(sock)
    opened = False
    try:
        try:
            if secure:
                transport = await Transport.open_tls(
                    sock, ssl_context or ssl.create_default_context(), parts.hostname)
            await transport.send_all(request)
            head, rest = await read_answer(transport)
        except (trio.BrokenResourceError, ssl.SSLError) as exc:
            raise HandshakeError(f"connection lost during the handshake: {exc!r}") from exc
        check_answer(head, key)
        opened = True
        return WebSocket(transport, rest, max_message=max_message,
                         close_timeout_s=close_timeout_s, absorb_heartbeats=absorb_heartbeats,
                         stall_timeout_s=stall_timeout_s)
    finally:
        if not opened:
            await trio.aclose_forcefully(transport)
