"""The websocket client's upgrade handshake (RFC 6455 4.1): the request, and the server's
answer read and checked. Part of the ticker's lean client (`_ws_client`)."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Protocol

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 16 * 1024  # the server's handshake answer


class HandshakeError(Exception):
    """The server did not answer the upgrade as a websocket server."""


class HandshakeRejected(HandshakeError):
    """The server answered the upgrade with `status_code`, not 101."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"the server answered {status_code}")
        self.status_code = status_code


def new_key() -> bytes:
    return base64.b64encode(os.urandom(16))


def upgrade_request(target: str, host: str, key: bytes) -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: {host}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


class _Readable(Protocol):
    async def receive_some(self, max_bytes: int) -> bytes: ...


async def read_answer(stream: _Readable) -> tuple[bytes, bytes]:
    """The answer's head, and whatever came after it (frames sent at once)."""
    data = bytearray()
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) > MAX_HEAD:
            raise HandshakeError(f"handshake answer over {MAX_HEAD} bytes")
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise HandshakeError("connection closed during the handshake")
        data += chunk
    return bytes(data[:end]), bytes(data[end + 4:])


def check_answer(head: bytes, key: bytes) -> None:
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
        raise HandshakeError(f"not an HTTP answer: {lines[0][:80]!r}")
    if int(status[1]) != 101:
        raise HandshakeRejected(int(status[1]))
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            raise HandshakeError(f"bad header line: {line[:80]!r}")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    connection = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    if headers.get("upgrade", "").lower() != "websocket" or "upgrade" not in connection:
        raise HandshakeError("101 without Upgrade: websocket / Connection: upgrade")
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    if headers.get("sec-websocket-accept") != accept:
        raise HandshakeError("wrong Sec-WebSocket-Accept")
    if "sec-websocket-extensions" in headers or "sec-websocket-protocol" in headers:
        raise HandshakeError("the server chose an extension or subprotocol nobody offered")
