"""A lean websocket client (RFC 6455, client side) for the Kite ticker, and for nothing else.

Why not trio-websocket here: per connection it runs a reader task that feeds wsproto and hands
each message to the consumer over a memory channel, so each frame costs a wake-up of that
reader, wsproto's event machinery, a channel hop and then a wake-up of the consumer. The ticker
of an idle account carries nothing but a 1-byte heartbeat a second, and at 1,000 idle accounts
that path was almost all of the gateway's idle CPU. Here there is no background task: the
single consumer's own `get_message` reads the socket and parses the frames itself, so one
heartbeat is one task wake-up; pings are answered inline. Parsing a server's frames by hand is
a few lines (they are unmasked) and costs about 1 us per heartbeat against wsproto's 12 us
(same machine, no I/O). Plain TCP is read by `SocketTransport` (one readiness wait and one
recv per heartbeat, no failed recv first); wss:// goes through trio's SSLStream.

Measured with `bench/accounts.py --accounts 1000`, before and after on the same (shared,
loaded) machine, four runs each: idle CPU 157-218 us per account per second with
trio-websocket, 61-71 us with this client; RSS 162-164 MiB -> 144-145 MiB. The ticker path
alone (1,000 connections beaten 10 times a second, nothing else in the process): 56-95 us per
beat -> 21-34 us.

Ticker only: one consumer, no extensions (no permessage-deflate), no subprotocol, text and
binary messages (fragmented ones too) up to `max_message` bytes. A protocol error closes with
1002 (oversized: 1009, bad UTF-8: 1007) and raises `ConnectionClosed`. The web layer and the
paper venue (the server side) keep hypercorn / trio-websocket.
"""

from __future__ import annotations

import os
import socket
import ssl
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
from ._ws_transport import SocketTransport, Transport

__all__ = ["GUID", "ConnectionClosed", "HandshakeError", "HandshakeRejected", "WebSocket",
           "connect"]

MAX_MESSAGE = 4 * 1024 * 1024
RECEIVE_SIZE = 65536
CLOSE_TIMEOUT_S = 1.0

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = frozenset((OP_CONTINUATION, OP_TEXT, OP_BINARY))
_KNOWN = _DATA | {OP_CLOSE, OP_PING, OP_PONG}

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1002
CLOSE_NO_STATUS = 1005  # never sent: a close frame without a code
CLOSE_ABNORMAL = 1006  # never sent: the connection ended without a close frame
CLOSE_BAD_DATA = 1007
CLOSE_TOO_BIG = 1009


class ConnectionClosed(Exception):
    """The websocket is closed: `code` is the peer's close code, the one we closed with, or
    1006 when the connection ended without a close frame."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"{code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class _Fail(Exception):
    """A frame we must refuse: close with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


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


class WebSocket:
    """One open client websocket; `get_message` by one consumer, `send_message` by any task."""

    def __init__(
        self, stream: Transport, buffered: bytes = b"", *,
        max_message: int = MAX_MESSAGE, close_timeout_s: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self._stream = stream
        self._buf = bytearray(buffered)
        self._max = max_message
        self._close_timeout_s = close_timeout_s
        self._parts: list[bytes] = []  # the fragments of the message being assembled
        self._part_op = 0  # its opcode (0: none under way)
        self._part_size = 0
        self._send_lock = trio.StrictFIFOLock()
        self._close_sent = False
        self.closed: ConnectionClosed | None = None  # why it closed, once it has

    async def get_message(self) -> str | bytes:
        """The next whole text (str) or binary (bytes) message; answers pings on the way.
        Raises ConnectionClosed once the connection is closed, by either side or by a fault."""
        buf = self._buf
        while True:
            if self.closed is not None:
                raise ConnectionClosed(self.closed.code, self.closed.reason)
            try:
                frame = self._frame() if len(buf) >= 2 else None
            except _Fail as fail:
                await self._fail(fail.code, fail.reason)
                continue
            if frame is None:
                try:
                    data = await self._stream.receive_some(RECEIVE_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    await self._lost(f"connection lost: {exc!r}")
                    continue
                if not data:
                    await self._lost("connection ended without a close frame")
                    continue
                buf += data
                continue
            opcode, fin, payload = frame
            if opcode == OP_BINARY and fin and not self._part_op:
                return payload  # the common case: a heartbeat, a tick
            message = await self._take(opcode, fin, payload)
            if message is not None:
                return message

    async def _take(self, opcode: int, fin: bool, payload: bytes) -> str | bytes | None:
        """One frame: a whole message, or None (a fragment, a control frame handled)."""
        if opcode == OP_PING:
            if not await self._send_bounded(OP_PONG, payload):
                await self._lost("could not answer a ping")
            return None
        if opcode == OP_PONG:
            return None
        if opcode == OP_CLOSE:
            await self._peer_closed(payload)
            return None
        if opcode == OP_CONTINUATION:
            if not self._part_op:
                await self._fail(CLOSE_PROTOCOL, "continuation frame without a message")
                return None
        elif self._part_op:
            await self._fail(CLOSE_PROTOCOL, "new message inside a fragmented one")
            return None
        else:
            self._part_op = opcode
        self._parts.append(payload)
        self._part_size += len(payload)
        if not fin:
            return None
        whole, opcode = b"".join(self._parts), self._part_op
        self._parts, self._part_op, self._part_size = [], 0, 0
        if opcode == OP_BINARY:
            return whole
        try:
            return whole.decode("utf-8")
        except UnicodeDecodeError:
            await self._fail(CLOSE_BAD_DATA, "text message is not UTF-8")
            return None

    def _frame(self) -> tuple[int, bool, bytes] | None:
        """The next whole frame off the buffer (None: not all of it here yet). Refuses what a
        server must not send, and a message over `max_message` as soon as its header says so."""
        buf = self._buf
        b0, b1 = buf[0], buf[1]
        if b1 & 0x80:
            raise _Fail(CLOSE_PROTOCOL, "masked frame from the server")
        if b0 & 0x70:
            raise _Fail(CLOSE_PROTOCOL, "reserved bits set (no extension was agreed)")
        opcode, fin, length, head = b0 & 0x0F, bool(b0 & 0x80), b1 & 0x7F, 2
        if opcode not in _KNOWN:
            raise _Fail(CLOSE_PROTOCOL, f"reserved opcode {opcode:#x}")
        if length >= 126:
            head = 4 if length == 126 else 10
            if len(buf) < head:
                return None
            length = int.from_bytes(buf[2:head], "big")
            if length >> 63:
                raise _Fail(CLOSE_PROTOCOL, "frame length over 2**63")
        if opcode >= OP_CLOSE:
            if length > 125 or not fin:
                raise _Fail(CLOSE_PROTOCOL, "control frame fragmented or over 125 bytes")
        elif self._part_size + length > self._max:
            raise _Fail(CLOSE_TOO_BIG, f"message over {self._max} bytes")
        end = head + length
        if len(buf) < end:
            return None
        payload = bytes(buf[head:end])
        del buf[:end]
        return opcode, fin, payload

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
                await self._stream.send_all(frame)
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
                    await self._stream.send_all(frame)
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

    async def _lost(self, reason: str) -> None:
        await self._shut(ConnectionClosed(CLOSE_ABNORMAL, reason))

    async def _shut(self, why: ConnectionClosed) -> None:
        if self.closed is None:
            self.closed = why
        await trio.aclose_forcefully(self._stream)

    async def aclose(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        """The close handshake: our close frame, then the peer's awaited for at most
        `close_timeout_s` (shielded: a cancelled owner still closes cleanly, and never for
        longer), then the transport closed. Messages still arriving are dropped."""
        if self.closed is not None:
            await trio.aclose_forcefully(self._stream)
            return
        with trio.CancelScope(shield=True), trio.move_on_after(self._close_timeout_s):
            if await self._send_bounded(OP_CLOSE, code.to_bytes(2, "big") + reason.encode()):
                await self._drain()
        await self._shut(ConnectionClosed(code, reason or "closed by us"))

    async def _drain(self) -> None:
        """Read and drop frames until the peer's close frame, the end of the stream or a
        frame we cannot read."""
        buf = self._buf
        while True:
            try:
                frame = self._frame() if len(buf) >= 2 else None
            except _Fail:
                return
            if frame is not None:
                if frame[0] == OP_CLOSE:
                    return
                continue
            try:
                data = await self._stream.receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            buf += data


async def connect(
    url: str, *, ssl_context: ssl.SSLContext | None = None, max_message: int = MAX_MESSAGE,
    close_timeout_s: float = CLOSE_TIMEOUT_S,
) -> WebSocket:
    """Open `url` (ws:// or wss://) and do the upgrade handshake. The caller bounds the time
    (`trio.fail_after`). Raises OSError (no TCP connection), HandshakeRejected (a non-101
    answer: its status code) or HandshakeError (anything else wrong, TLS included)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a websocket URL: {url!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = new_key()
    request = upgrade_request(target, parts.netloc.rpartition("@")[2], key)
    stream: trio.abc.Stream = await trio.open_tcp_stream(parts.hostname, port)
    opened = False
    try:
        if secure:
            context = ssl_context or ssl.create_default_context()
            stream = trio.SSLStream(stream, context, server_hostname=parts.hostname,
                                    https_compatible=True)
        try:
            await stream.send_all(request)
            head, rest = await read_answer(stream)
        except trio.BrokenResourceError as exc:
            raise HandshakeError(f"connection lost during the handshake: {exc!r}") from exc
        check_answer(head, key)
        transport: Transport = stream  # type: ignore[assignment]
        if isinstance(stream, trio.SocketStream):
            transport = SocketTransport(socket.socket(fileno=stream.socket.detach()))
        opened = True
        return WebSocket(transport, rest, max_message=max_message,
                         close_timeout_s=close_timeout_s)
    finally:
        if not opened:
            await trio.aclose_forcefully(stream)
