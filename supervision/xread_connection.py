"""[cluster]: the stream reader's own Redis connection, for its blocking XREAD only.

The reader sends one XREAD per update when updates come one at a time, so what a round costs
the client is what a cross-node delivery costs beyond a local one. Through coredis a round
takes 400-650 µs of CPU (bench/xread_round.py, 20 streams, a loaded 2-core machine: argument
checks, retries, timeouts, the hops between its writer and reader tasks; nearly all client
overhead, not parsing); written and parsed here, 125-230 µs. Hence this connection: RESP2
over one socket (redis://, rediss://, unix://, with the URL's user, password and db), one
command at a time, dropped on any error or cancellation (its reply could otherwise be taken
for the next one's) and made again by the next call. Every other call of the reader stays on
coredis.
"""

from __future__ import annotations

import ssl
from urllib.parse import parse_qs, unquote, urlsplit

import trio
from coredis.exceptions import ResponseError

__all__ = ["XReadConnection"]

#: How long past its BLOCK a reply may take, and connecting, before the socket is given up.
MARGIN_S = 2.0
CONNECT_S = 1.0


class XReadConnection:
    """XREAD on a connection of its own to the Redis of `url`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._parts = parts
        path_db = "" if parts.scheme == "unix" else parts.path.strip("/")
        self._db = int(parse_qs(parts.query).get("db", [path_db])[0] or 0)
        self._stream: trio.abc.Stream | None = None
        self._reply = _Reply()
        self.connects = 0  # connections made (a reconnect counts)

    async def xread(self, positions: dict[str, str], count: int,
                    block_ms: int) -> dict[str, list[tuple[str, str]]]:
        """Per stream with entries after its position: (entry id, its field `m`) of each, at
        most `count`; {} when none came within `block_ms`. Raises `OSError` when Redis cannot
        be reached or answers too late, `ResponseError` on an error reply."""
        args = ["XREAD", "COUNT", str(count), "BLOCK", str(block_ms), "STREAMS",
                *positions.keys(), *positions.values()]
        reply = None
        limit_s = block_ms / 1000 + MARGIN_S
        # (a bare cancel scope: half the cost of `fail_after` on a round this short)
        with trio.CancelScope(deadline=trio.current_time() + limit_s) as scope:
            reply = await self._call(args)
        if scope.cancelled_caught:  # (the socket was closed on the way out)
            raise ConnectionError(f"no answer to XREAD within {limit_s} s")
        found: dict[str, list[tuple[str, str]]] = {}
        for key, entries in reply or ():
            found[key] = [(entry_id, _field(fields, "m")) for entry_id, fields in entries]
        return found

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        self._reply.clear()
        if stream is not None:
            await trio.aclose_forcefully(stream)

    async def _call(self, args: list[str]) -> object:
        if self._stream is None:
            await self._connect()
        try:
            return await self._command(args)
        except BaseException:
            await self.aclose()
            raise

    async def _connect(self) -> None:
        parts = self._parts
        with trio.fail_after(CONNECT_S):
            if parts.scheme == "unix":
                stream: trio.abc.Stream = await trio.open_unix_socket(unquote(parts.path))
            elif parts.scheme == "rediss":
                stream = await trio.open_ssl_over_tcp_stream(
                    parts.hostname or "127.0.0.1", parts.port or 6379,
                    ssl_context=ssl.create_default_context())
            else:
                stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1",
                                                    parts.port or 6379)
        self._stream = stream
        self.connects += 1
        try:
            with trio.fail_after(CONNECT_S):
                if parts.password is not None:
                    await self._command(["AUTH", *([unquote(parts.username)] if parts.username
                                                   else []), unquote(parts.password)])
                if self._db:
                    await self._command(["SELECT", str(self._db)])
        except BaseException:
            await self.aclose()
            raise

    async def _command(self, args: list[str]) -> object:
        assert self._stream is not None
        await self._stream.send_all(_encode(args))
        while (reply := self._reply.parse()) is _NOT_YET:
            data = await self._stream.receive_some(1 << 16)
            if not data:
                raise ConnectionError("Redis closed the connection")
            self._reply.buffer += data
        if isinstance(reply, ResponseError):
            raise reply
        return reply


def _encode(args: list[str]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


_NOT_YET = object()


class _Reply:
    """RESP2 replies parsed as their bytes come in: where a reply is cut, parsing resumes
    there (so linear in its size, however the socket splits it)."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self._at = 0
        self._open: list[tuple[list[object], int]] = []  # arrays begun: items so far, size

    def clear(self) -> None:
        self.buffer.clear()
        self._at = 0
        self._open.clear()

    def parse(self) -> object:
        """The next whole reply, or `_NOT_YET`."""
        buffer = self.buffer
        while True:
            eol = buffer.find(b"\r\n", self._at)
            if eol < 0:
                return _NOT_YET
            kind, head = buffer[self._at], buffer[self._at + 1:eol]
            value: object
            if kind == 42 and int(head) > 0:  # * an array: its items follow
                self._open.append(([], int(head)))
                self._at = eol + 2
                continue
            if kind == 36 and int(head) >= 0:  # $ a bulk string
                end = eol + 2 + int(head)
                if len(buffer) < end + 2:
                    return _NOT_YET
                value, self._at = buffer[eol + 2:end].decode(), end + 2
            else:
                value, self._at = _scalar(kind, head), eol + 2
            while self._open:  # the value ends every array it completes
                items, size = self._open[-1]
                items.append(value)
                if len(items) < size:
                    break
                self._open.pop()
                value = items
            else:
                del buffer[:self._at]
                self._at = 0
                return value


def _scalar(kind: int, head: bytearray) -> object:
    if kind in (36, 42):  # a null bulk string or array ($-1, *-1), or an empty array (*0)
        return [] if int(head) == 0 else None
    if kind == 43:  # + a simple string
        return head.decode()
    if kind == 58:  # : an integer
        return int(head)
    if kind == 45:  # - an error
        return ResponseError(head.decode())
    raise ConnectionError(f"not a RESP2 reply: {bytes(head)[:40]!r}")


def _field(fields: list[str], name: str) -> str:
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == name:
            return fields[i + 1]
    return ""
