"""The websocket client's transport: a non-blocking socket, with TLS (wss://) done in memory by
an `ssl.SSLObject` and two MemoryBIOs. Part of the ticker's lean client (`_ws_client`).

Why not trio's SocketStream / SSLStream: the shared reader (`ticker_reader`) must read a socket
without awaiting, when one `epoll` says it is readable; so reading has a synchronous form,
`recv_nowait`, and TLS has to be ours to feed. The handshake and every write stay async.
The reader never writes: output TLS makes while reading (a TLS 1.3 key update or session
ticket) waits in the outgoing BIO for the next `send_all`, so writes keep their order.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

T = TypeVar("T")

__all__ = ["Transport"]


class Transport:
    """One connection's socket (non-blocking), plaintext in and out; TLS when `tls` is given."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject | None = None,
                 incoming: ssl.MemoryBIO | None = None,
                 outgoing: ssl.MemoryBIO | None = None) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._tls = tls
        self._in = incoming
        self._out = outgoing

    @classmethod
    async def open_tls(cls, sock: socket.socket, context: ssl.SSLContext,
                       hostname: str) -> Transport:
        """The TLS handshake over `sock`; ssl.SSLError (or OSError) when it fails."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname=hostname)
        transport = cls(sock, tls, incoming, outgoing)
        await transport._tls_call(tls.do_handshake)
        return transport

    def fileno(self) -> int:
        return self.sock.fileno()

    def recv_nowait(self, max_bytes: int) -> bytes | None:
        """What has arrived, without waiting: None if nothing yet (or only part of a TLS
        record), b"" at the end of the stream. Raises trio.BrokenResourceError on a reset or
        bad TLS, trio.ClosedResourceError once closed."""
        try:
            data = self.sock.recv(max_bytes)
        except BlockingIOError:
            return None
        except OSError as exc:
            raise self._broken(exc) from exc
        if self._tls is None:
            return data
        assert self._in is not None
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()
        return self._decrypted(max_bytes)

    def _decrypted(self, max_bytes: int) -> bytes | None:
        assert self._tls is not None
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._tls.read(max_bytes)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                if not chunks:
                    return b""
                break
            except ssl.SSLError as exc:
                raise trio.BrokenResourceError(f"TLS failed: {exc}") from exc
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks) if chunks else None

    async def receive_some(self, max_bytes: int) -> bytes:
        """The next bytes, waiting for them (b"": the end of the stream)."""
        while (data := self.recv_nowait(max_bytes)) is None:
            await self._wait(trio.lowlevel.wait_readable)
        return data

    async def send_all(self, data: bytes) -> None:
        """Write all of `data` (encrypted under TLS), waiting while the socket is full."""
        if self._tls is None:
            await self._send_raw(data)
            return
        tls = self._tls
        await self._tls_call(lambda: tls.write(data))

    async def _tls_call(self, call: Callable[[], T]) -> T:
        """Run a TLS step, feeding it the peer's bytes until it has what it wants; what it
        writes goes out."""
        assert self._in is not None and self._out is not None
        while True:
            try:
                result = call()
            except ssl.SSLWantReadError:
                await self._flush()
                data = await self._recv_raw()
                if data:
                    self._in.write(data)
                else:
                    self._in.write_eof()
                continue
            await self._flush()
            return result

    async def _recv_raw(self) -> bytes:
        while True:
            try:
                return self.sock.recv(65536)
            except BlockingIOError:
                await self._wait(trio.lowlevel.wait_readable)
            except OSError as exc:
                raise self._broken(exc) from exc

    async def _flush(self) -> None:
        assert self._out is not None
        if self._out.pending:
            await self._send_raw(self._out.read())

    async def _send_raw(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                await self._wait(trio.lowlevel.wait_writable)
            except OSError as exc:
                raise self._broken(exc) from exc
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _wait(self, wait: Callable[[socket.socket], Awaitable[None]]) -> None:
        if self.sock.fileno() < 0:
            raise trio.ClosedResourceError("the socket is closed")
        await wait(self.sock)

    def _broken(self, exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
        if self.sock.fileno() < 0:
            return trio.ClosedResourceError("the socket is closed")
        return trio.BrokenResourceError(f"socket connection broken: {exc}")

    async def aclose(self) -> None:
        if self.sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self.sock)
            self.sock.close()
        await trio.lowlevel.checkpoint()
