"""Hostile clients on raw sockets: they do what a browser or a library never would.

Each kind opens its own TCP connection to the web front, misbehaves, and leaves. None of them
may end the process or slow the well-behaved subscribers. `HostileStats` counts what they sent.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Awaitable, Callable

import attrs
import trio

_LINGER_RESET = struct.pack("ii", 1, 0)


@attrs.define
class HostileStats:
    connections: int = 0
    frames: int = 0
    bytes: int = 0
    resets: int = 0
    upgraded: int = 0  # connections that got their 101 before misbehaving


def frame(payload: bytes, opcode: int = 0x1, *, length: int | None = None) -> bytes:
    """A masked client frame (RFC 6455 §5.2); `length` may lie about the payload's size."""
    n = len(payload) if length is None else length
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


def upgrade(address: str, path: str, token: str | None) -> bytes:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {address}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class Hostile:
    """One misbehaving client per call; every method returns once its connection is gone."""

    def __init__(self, address: str, account: str, token: str, stats: HostileStats) -> None:
        self.address = address
        self.path = f"/ws/orders/{account}"
        self.token = token
        self.stats = stats

    async def _open(self, query: str = "", *, small_buffer: bool = False) -> trio.SocketStream:
        host, port = self.address.rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        if small_buffer:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.stats.connections += 1
        await self._send(stream, upgrade(self.address, self.path + query, self.token))
        response = b""
        with trio.move_on_after(2):
            try:
                while b"\r\n\r\n" not in response:
                    response += await stream.receive_some(4096)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        if response.startswith(b"HTTP/1.1 101"):
            self.stats.upgraded += 1
        return stream

    async def _send(self, stream: trio.SocketStream, data: bytes) -> bool:
        try:
            with trio.move_on_after(2):
                await stream.send_all(data)
                self.stats.bytes += len(data)
                return True
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        return False

    async def _reset(self, stream: trio.SocketStream) -> None:
        """Close with RST, as a client that crashed or lost its network would."""
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.stats.resets += 1
        await trio.aclose_forcefully(stream)

    async def _frames(self, stream: trio.SocketStream, frames: list[bytes]) -> None:
        self.stats.frames += len(frames)
        await self._send(stream, b"".join(frames))

    async def ping_flood_never_reads(self) -> None:
        stream = await self._open(small_buffer=True)
        await self._frames(stream, [frame(b"ping")] * 5000)
        await trio.sleep(0.3)  # holds the socket, reading nothing, while pings pile up
        await self._reset(stream)

    async def never_reads(self) -> None:
        stream = await self._open(small_buffer=True)
        await trio.sleep(0.5)
        await trio.aclose_forcefully(stream)

    async def huge_frame(self) -> None:
        stream = await self._open()
        await self._frames(stream, [frame(b"x" * 70_000, length=17_000_000)])
        await trio.aclose_forcefully(stream)

    async def binary_and_bad_utf8(self) -> None:
        stream = await self._open()
        await self._frames(stream, [frame(b"\x00\x01", opcode=0x2), frame(b"\xff\xfe\xfd")])
        await self._read_a_little(stream)
        await trio.aclose_forcefully(stream)

    async def bad_since(self) -> None:
        for since in ("abc", "-1", "9" * 40, "%00"):
            stream = await self._open(f"?since={since}")
            await self._read_a_little(stream)
            await trio.aclose_forcefully(stream)

    async def reset_mid_frame(self) -> None:
        stream = await self._open()
        whole = frame(b"ping" * 100)
        await self._frames(stream, [whole[: len(whole) // 2]])
        await self._reset(stream)

    async def half_close(self) -> None:
        """EOF from the client while the server's pings flow (hypercorn's send_eof race)."""
        stream = await self._open()
        await stream.send_eof()
        await self._read_a_little(stream)
        await trio.aclose_forcefully(stream)

    async def pipelined(self) -> None:
        """Frames glued to the upgrade request, before the 101 (hypercorn answers 400)."""
        host, port = self.address.rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        self.stats.connections += 1
        request = upgrade(self.address, self.path, self.token)
        await self._send(stream, request + frame(b"ping") * 3)
        await self._read_a_little(stream)
        await self._reset(stream)

    async def garbage(self) -> None:
        host, port = self.address.rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        self.stats.connections += 1
        request = b"GET /ws/orders/primary HTTP/1.1\r\nUpgrade: \xff\r\n\r\n\x00"
        await self._send(stream, request * 3)
        await self._reset(stream)

    async def _read_a_little(self, stream: trio.SocketStream) -> None:
        with trio.move_on_after(0.2):
            try:
                while await stream.receive_some(65536):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def kinds(self) -> list[Callable[[], Awaitable[None]]]:
        return [
            self.ping_flood_never_reads, self.never_reads, self.huge_frame,
            self.binary_and_bad_utf8, self.bad_since, self.reset_mid_frame, self.half_close,
            self.pipelined, self.garbage,
        ]
