"""The websocket client's transports: plain TCP read the cheap way (`SocketTransport`), or
trio's SSLStream for wss://. Part of the ticker's lean client (`_ws_client`)."""

from __future__ import annotations

import socket
from typing import Protocol

import trio


class Transport(Protocol):
    """What the websocket reads and writes: `SocketTransport`, or trio's SSLStream for wss."""

    async def receive_some(self, max_bytes: int) -> bytes | bytearray: ...

    async def send_all(self, data: bytes) -> None: ...

    async def aclose(self) -> None: ...


class SocketTransport:
    """Plain TCP with one wait and one recv per heartbeat: trio's SocketStream tries a recv
    first and waits only when it fails (a syscall and a BlockingIOError per idle frame, under
    two context managers). Here a short read means the socket is drained, so the next read
    waits for readiness first; after a full read it checkpoints and tries at once."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._drained = True

    async def receive_some(self, max_bytes: int) -> bytes:
        if self._drained:
            await trio.lowlevel.wait_readable(self._sock)
        else:
            await trio.lowlevel.checkpoint()
        while True:
            try:
                data = self._sock.recv(max_bytes)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self._sock)
                continue
            except OSError as exc:
                raise self._broken(exc) from exc
            self._drained = len(data) < max_bytes
            return data

    async def send_all(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        view = memoryview(data)
        while view:
            try:
                view = view[self._sock.send(view):]
            except BlockingIOError:
                await trio.lowlevel.wait_writable(self._sock)
            except OSError as exc:
                raise self._broken(exc) from exc
        await trio.lowlevel.cancel_shielded_checkpoint()

    def _broken(self, exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
        if self._sock.fileno() < 0:
            return trio.ClosedResourceError("the socket is closed")
        return trio.BrokenResourceError(f"socket connection broken: {exc}")

    async def aclose(self) -> None:
        if self._sock.fileno() >= 0:
            trio.lowlevel.notify_closing(self._sock)
            self._sock.close()
        await trio.lowlevel.checkpoint()
