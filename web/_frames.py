"""Pre-framed websocket writes straight to the connection's socket, under hypercorn's send lock.

Per delivery the Quart → ASGI → hypercorn `WSStream` → wsproto → `TCPServer.protocol_send` path
costs tens of microseconds of Python and several Trio checkpoints. A server→client text frame
is just a header and the UTF-8 payload (servers never mask), so the frame is built once per
message and the same bytes object goes to every subscriber that receives that message.

`DirectSocket` reaches the connection's `GuardedTCPServer` (web/_server.py, hypercorn's
`TCPServer` with a bounded send path) for one HTTP/1.1 websocket connection (plain TCP,
no TLS, no permessage-deflate offered: anything else returns None and the caller keeps the
normal path) and writes frames two ways:

- `try_send(frame)`, synchronous, from the fan-out itself: one non-blocking `write(2)` when
  nothing else is writing to the socket. No task switch at all when the kernel takes the whole
  frame (the usual case: the subscriber keeps up). If it takes part of it, the rest is *pending*
  and must reach the socket before any other byte.
- `send(frame)`, async: the server's own `protocol_send(RawData(...))` (its send lock, a
  shielded write with the send deadline, and aborting the connection when it fails).

Every writer of the socket goes through hypercorn's `send_lock`; `DirectSocket` replaces that
attribute with a `_Gate` over the same lock that, once acquired, writes out the pending bytes
first. So hypercorn's pings, pong replies and close frames, and our own async sends, can never
interleave with a partly written frame.
"""

from __future__ import annotations

import os
import struct
from types import TracebackType
from typing import Any

import trio
from hypercorn.events import RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import WSStream

from ._server import GuardedTCPServer

_SHORT = struct.Struct("!BB").pack
_MEDIUM = struct.Struct("!BBH").pack
_LONG = struct.Struct("!BBQ").pack
_FIN_TEXT = 0x81

TAKEN = 1  # written whole, or the rest is pending (see DirectSocket.try_send)
PARTIAL = 2  # taken, and the caller must make sure someone flushes the pending rest
REFUSED = 0  # not written at all: send it the normal way


def text_frame(payload: bytes) -> bytes:
    """One unmasked, unfragmented text frame (RFC 6455 §5.2) holding `payload` (UTF-8)."""
    n = len(payload)
    if n < 126:
        return _SHORT(_FIN_TEXT, n) + payload
    if n < 65536:
        return _MEDIUM(_FIN_TEXT, 126, n) + payload
    return _LONG(_FIN_TEXT, 127, n) + payload


class FrameCache:
    """The frame of the last message framed: a broadcast frames each message once, not per
    subscriber (the actor offers the same str object to every subscriber in turn)."""

    __slots__ = ("_frame", "_text")

    def __init__(self) -> None:
        self._text: str | None = None
        self._frame = b""

    def __call__(self, text: str) -> bytes:
        if text is not self._text:
            self._frame = text_frame(text.encode())
            self._text = text
        return self._frame


frame_of = FrameCache()


def decline_compression(asgi_send: Any) -> None:
    """Answer the handshake without permessage-deflate (call before accepting).

    Order messages are a few hundred bytes; compressing each one for each subscriber costs more
    CPU than it saves bandwidth, and it would keep the connection off the shared-frame path.
    """
    ws_stream = getattr(asgi_send, "__self__", None)
    if type(ws_stream) is WSStream and not ws_stream.handshake.accepted:
        ws_stream.handshake.extensions = None


class DirectSocket:
    __slots__ = ("_fileno", "_lock", "_pending", "_send", "_tcp", "_ws")

    def __init__(self, tcp: GuardedTCPServer, ws_stream: WSStream) -> None:
        self._ws = ws_stream
        self._tcp = tcp
        self._fileno = tcp.stream.socket.fileno
        self._lock: trio.Lock = tcp.send_lock
        self._send = tcp.protocol_send
        self._pending: memoryview | None = None
        tcp.send_lock = _Gate(self)  # type: ignore[assignment]

    @classmethod
    def open(cls, asgi_send: Any) -> DirectSocket | None:
        """The direct writer of the connection behind this ASGI `send`, or None (normal path)."""
        ws_stream = getattr(asgi_send, "__self__", None)
        if type(ws_stream) is not WSStream:
            return None
        protocol = getattr(ws_stream.send, "__self__", None)
        if type(protocol) is not H11Protocol:  # HTTP/2 websockets: frames go in h2 DATA
            return None
        tcp = getattr(protocol.send, "__self__", None)
        if type(tcp) is not GuardedTCPServer or type(tcp.stream) is not trio.SocketStream:  # TLS
            return None
        if type(tcp.send_lock) is not trio.Lock:
            return None
        offered = ws_stream.handshake.extensions or []
        if any("permessage-deflate" in extension.lower() for extension in offered):
            return None  # the client gets compressed frames from wsproto, as negotiated
        return cls(tcp, ws_stream)

    def try_send(self, frame: bytes) -> int:
        """Write `frame` now if nobody else is writing: TAKEN, PARTIAL (the rest is pending
        until the next holder of the send lock writes it) or REFUSED."""
        if self._pending is not None or self._lock.locked() or self._ws.closed or self._tcp.aborted:
            return REFUSED
        try:
            sent = os.write(self._fileno(), frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            return REFUSED  # the normal path meets the same error and closes the connection
        if sent == len(frame):
            return TAKEN
        self._pending = memoryview(frame)[sent:]
        return PARTIAL

    async def send(self, frame: bytes) -> None:
        """Write `frame` after everything before it: hypercorn's own raw write."""
        if not self._ws.closed:  # as hypercorn's app_send: nothing after the stream closed
            await self._send(RawData(data=frame))

    async def flush(self) -> None:
        """Write out what `try_send` left pending."""
        async with _Gate(self):
            pass

    async def _acquire(self) -> None:
        await self._lock.acquire()
        pending, self._pending = self._pending, None
        if pending is not None and not await self._tcp.write(pending):
            await self._tcp.abort()  # the holder's own write then finds the connection aborted


class _Gate:
    """Stands in for `TCPServer.send_lock`: the same lock, pending bytes written on entry."""

    __slots__ = ("_direct",)

    def __init__(self, direct: DirectSocket) -> None:
        self._direct = direct

    def locked(self) -> bool:
        return self._direct._lock.locked()

    async def __aenter__(self) -> None:
        await self._direct._acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._direct._lock.release()
