"""The lean ticker websocket client (`brokers/_ws_client.py`) against real servers on loopback:
the paper venue (hypercorn's websocket server), and hostile peers written here as raw trio TCP
servers that speak just enough HTTP and RFC 6455 to misbehave in one precise way each.

Each hostile peer runs in the test's own nursery, so its assertions fail the test, and the
test waits for it to finish: what the client sent back (a pong, a close code) is checked on the
wire.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from brokers import _ws_client as wsc
from brokers.base import TokenExpired, UpstreamLost
from brokers.kite import KiteBroker, KiteSettings
from brokers.paper import VenueAddress
from brokers.ticker_reader import TickerReader
from tests.fixtures_venue import ticker_url

TIMEOUT_S = 5

Connect = Callable[..., Awaitable[wsc.WebSocket]]


@pytest.fixture
def connect(reader: TickerReader | None) -> Connect:
    """`wsc.connect`, the websocket then read by `reader` (if any)."""
    async def connect(url: str, **options: Any) -> wsc.WebSocket:
        ws = await wsc.connect(url, **options)
        if reader is not None:
            reader.add(ws)
        return ws
    return connect


def server_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
                 masked: bool = False, length: int | None = None) -> bytes:
    """A server frame, honest (unmasked, its real length) unless told otherwise."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, mask_bit | n))
    elif n < 65536:
        head = bytes((b0, mask_bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, mask_bit | 127)) + struct.pack("!Q", n)
    return head + (b"\0\0\0\0" if masked else b"") + payload


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


@attrs.define
class Peer:
    """One accepted connection: the raw stream, and what came from the client so far."""

    stream: trio.SocketStream
    buf: bytearray = attrs.Factory(bytearray)

    async def _fill(self, n: int) -> bool:
        while len(self.buf) < n:
            data = await self.stream.receive_some(65536)
            if not data:
                return False
            self.buf += data
        return True

    async def request(self) -> dict[str, str]:
        """Read the upgrade request; its headers (lower-case names), `:target` its target."""
        while b"\r\n\r\n" not in self.buf:
            assert await self._fill(len(self.buf) + 1), "closed before the request ended"
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        self.buf = bytearray(rest)
        lines = head.decode().split("\r\n")
        headers = {":target": lines[0].split(" ")[1]}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return headers

    async def accept(self, extra: bytes = b"") -> dict[str, str]:
        """An honest 101, then `extra` in the same write."""
        headers = await self.request()
        digest = hashlib.sha1(headers["sec-websocket-key"].encode() + wsc.GUID).digest()
        await self.stream.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n" + extra
        )
        return headers

    async def frame(self) -> tuple[int, bytes] | None:
        """The client's next frame (opcode, unmasked payload); None at the end of the stream.
        Asserts what a client frame must be: final, masked."""
        if not await self._fill(2):
            return None
        b0, b1 = self.buf[0], self.buf[1]
        assert b0 & 0x80 and b1 & 0x80, "client frames are whole and masked"
        n, at = b1 & 0x7F, 2
        if n == 126:
            assert await self._fill(4)
            n, at = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            assert await self._fill(10)
            n, at = struct.unpack("!Q", self.buf[2:10])[0], 10
        assert await self._fill(at + 4 + n)
        mask = self.buf[at:at + 4]
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(self.buf[at + 4:at + 4 + n]))
        del self.buf[:at + 4 + n]
        return b0 & 0x0F, body

    async def close_code(self) -> int | None:
        """The code of the client's close frame, skipping other frames (None: no close)."""
        while (frame := await self.frame()) is not None:
            if frame[0] == wsc.OP_CLOSE:
                return int(struct.unpack("!H", frame[1][:2])[0])
        return None

    async def end(self) -> None:
        """Wait for the client to close the TCP connection (a reset, if it left our bytes
        unread, is a close too)."""
        try:
            while await self._fill(len(self.buf) + 1):
                self.buf.clear()
        except trio.BrokenResourceError:
            pass


Handler = Callable[[Peer], Awaitable[None]]


async def serve_peer(handler: Handler, *, task_status: trio.TaskStatus[int]) -> None:
    """Accept one connection on a fresh loopback port and hand it to `handler`."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    async with listeners[0] as listener:
        task_status.started(listener.socket.getsockname()[1])
        stream = await listener.accept()
    async with stream:
        await handler(Peer(stream))


def url_of(port: int, scheme: str = "ws") -> str:
    return f"{scheme}://127.0.0.1:{port}/?api_key=k&access_token=t"


# ---- the paper venue (hypercorn's server side) ----------------------------------------------


async def test_against_the_venue_heartbeats_send_and_a_clean_close(
    venue: VenueAddress, connect: Connect,
) -> None:
    with trio.fail_after(TIMEOUT_S):
        ws = await connect(ticker_url(venue.ticker_url))
        assert await ws.get_message() == b"\x00"  # the heartbeat: one binary byte
        await ws.send_message('{"a": "subscribe", "v": [256265]}')
        await ws.aclose()
        assert ws.closed is not None and ws.closed.code == 1000
        with pytest.raises(wsc.ConnectionClosed):
            await ws.get_message()
        with pytest.raises(wsc.ConnectionClosed):
            await ws.send_message("after the close")


async def test_a_wrong_token_at_the_venue_is_closed_1008_and_token_expired(
    venue: VenueAddress,
) -> None:
    b = KiteBroker(KiteSettings("paper", "wrong", venue.rest_url, venue.ticker_url))
    try:
        with trio.fail_after(TIMEOUT_S), pytest.raises(TokenExpired):
            async with b.open_stream() as stream:
                async for _ in stream:
                    pass
    finally:
        await b.aclose()


# ---- handshakes ------------------------------------------------------------------------------


@attrs.frozen
class BadAnswer:
    name: str
    answer: bytes
    error: type[Exception]
    hang_up: bool = False  # the peer closes after its answer (else it waits for the client)


BAD_ANSWERS = [
    BadAnswer("not http", b"hello there\r\n\r\n", wsc.HandshakeError),
    BadAnswer("403", b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
              wsc.HandshakeRejected),
    BadAnswer("wrong accept", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\nSec-WebSocket-Accept: AAAA\r\n\r\n", wsc.HandshakeError),
    BadAnswer("no upgrade", b"HTTP/1.1 101 Switching Protocols\r\n\r\n", wsc.HandshakeError),
    BadAnswer("closed mid-answer", b"HTTP/1.1 101 Swi", wsc.HandshakeError, hang_up=True),
    BadAnswer("endless head", b"HTTP/1.1 101 OK\r\n" + b"X: y\r\n" * 5000, wsc.HandshakeError),
]


@pytest.mark.parametrize("bad", BAD_ANSWERS, ids=lambda b: b.name)
async def test_a_bad_handshake_answer_is_refused(bad: BadAnswer) -> None:
    async def peer(p: Peer) -> None:
        await p.request()
        await p.stream.send_all(bad.answer)
        if not bad.hang_up:
            await p.end()  # the client closes the connection, it does not hang on

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            with pytest.raises(bad.error):
                await wsc.connect(url_of(port))


@pytest.mark.parametrize(("status", "error"), [(401, TokenExpired), (403, TokenExpired),
                                                (500, UpstreamLost)])
async def test_the_adapter_maps_a_refused_upgrade(status: int, error: type[Exception]) -> None:
    async def peer(p: Peer) -> None:
        await p.request()
        await p.stream.send_all(f"HTTP/1.1 {status} No\r\nContent-Length: 0\r\n\r\n".encode())
        await p.end()

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            b = KiteBroker(KiteSettings("k", "t", f"http://127.0.0.1:{port}", url_of(port)))
            try:
                with pytest.raises(error) as info:
                    async with b.open_stream():
                        raise AssertionError("refused, yet opened")
            finally:
                await b.aclose()
    if error is TokenExpired:
        assert info.value.status == status  # type: ignore[attr-defined]


async def test_the_request_and_frames_sent_with_the_101(connect: Connect) -> None:
    """Frames the server writes together with its 101 are not lost; the request is a proper
    upgrade for the URL's target."""
    seen: dict[str, str] = {}

    async def peer(p: Peer) -> None:
        seen.update(await p.accept(server_frame(wsc.OP_TEXT, b"first")
                                   + server_frame(wsc.OP_BINARY, b"\x00")))
        assert await p.close_code() == 1000
        await p.stream.send_all(server_frame(wsc.OP_CLOSE, close_payload(1000)))

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            ws = await connect(url_of(port))
            assert await ws.get_message() == "first"
            assert await ws.get_message() == b"\x00"
            await ws.aclose()
    assert seen[":target"] == "/?api_key=k&access_token=t"
    assert seen["upgrade"] == "websocket" and seen["sec-websocket-version"] == "13"
    assert seen["host"] == f"127.0.0.1:{port}"


# ---- messages --------------------------------------------------------------------------------


async def test_fragments_with_a_ping_between_and_lengths_of_16_and_64_bits(
    connect: Connect,
) -> None:
    big16, big64 = b"x" * 300, bytes(range(256)) * 300  # 76,800 bytes: a 64-bit length
    pongs: list[bytes] = []

    async def peer(p: Peer) -> None:
        await p.accept()
        await p.stream.send_all(
            server_frame(wsc.OP_TEXT, "héllo, ".encode()[:3], fin=False)  # splits the é
            + server_frame(wsc.OP_PING, b"are you there")
            + server_frame(wsc.OP_CONTINUATION, "héllo, ".encode()[3:], fin=False)
            + server_frame(wsc.OP_CONTINUATION, b"world")
        )
        frame = await p.frame()
        assert frame is not None and frame[0] == wsc.OP_PONG
        pongs.append(frame[1])
        for chunk in (server_frame(wsc.OP_BINARY, big16), server_frame(wsc.OP_BINARY, big64)):
            await p.stream.send_all(chunk[:5])  # a header cut short, then the rest
            await p.stream.send_all(chunk[5:])
        frame = await p.frame()
        assert frame == (wsc.OP_TEXT, "réponse".encode())
        assert await p.close_code() == 1000
        await p.stream.send_all(server_frame(wsc.OP_CLOSE, close_payload(1000)))

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            ws = await connect(url_of(port))
            assert await ws.get_message() == "héllo, world"
            assert await ws.get_message() == big16
            assert await ws.get_message() == big64
            await ws.send_message("réponse")
            await ws.aclose()
    assert pongs == [b"are you there"]


async def test_a_pong_unasked_is_ignored_and_the_peer_close_is_echoed(
    connect: Connect,
) -> None:
    async def peer(p: Peer) -> None:
        await p.accept()
        await p.stream.send_all(server_frame(wsc.OP_PONG, b"?")
                                + server_frame(wsc.OP_CLOSE, close_payload(4001, "bye")))
        assert await p.close_code() == 4001
        await p.end()

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            ws = await connect(url_of(port))
            with pytest.raises(wsc.ConnectionClosed) as info:
                await ws.get_message()
            assert (info.value.code, info.value.reason) == (4001, "bye")
            await ws.aclose()  # already closed: at once


# ---- protocol errors -------------------------------------------------------------------------


@attrs.frozen
class Violation:
    name: str
    frames: bytes
    code: int


VIOLATIONS = [
    Violation("oversized frame", server_frame(wsc.OP_BINARY, length=5 * 2**20), 1009),
    Violation("oversized fragments", server_frame(wsc.OP_BINARY, b"x" * 70_000, fin=False)
              + server_frame(wsc.OP_CONTINUATION, b"x" * 70_000), 1009),
    Violation("reserved opcode", server_frame(0x3, b"?"), 1002),
    Violation("reserved control opcode", server_frame(0xB), 1002),
    Violation("rsv bit", server_frame(wsc.OP_TEXT, b"deflated?", rsv=0x40), 1002),
    Violation("masked server frame", server_frame(wsc.OP_TEXT, b"hi", masked=True), 1002),
    Violation("lonely continuation", server_frame(wsc.OP_CONTINUATION, b"x"), 1002),
    Violation("message inside a message", server_frame(wsc.OP_TEXT, b"a", fin=False)
              + server_frame(wsc.OP_TEXT, b"b"), 1002),
    Violation("fragmented ping", server_frame(wsc.OP_PING, b"p", fin=False), 1002),
    Violation("long ping", server_frame(wsc.OP_PING, b"p" * 126), 1002),
    Violation("close of one byte", server_frame(wsc.OP_CLOSE, b"\x03"), 1002),
    Violation("invalid close code", server_frame(wsc.OP_CLOSE, close_payload(1005)), 1002),
    Violation("bad utf-8 text", server_frame(wsc.OP_TEXT, b"\xff\xfe"), 1007),
]


@pytest.mark.parametrize("bad", VIOLATIONS, ids=lambda v: v.name)
async def test_a_protocol_violation_closes_with_its_code(bad: Violation, connect: Connect) -> None:
    sent: list[int | None] = []

    async def peer(p: Peer) -> None:
        await p.accept()
        await p.stream.send_all(bad.frames)
        sent.append(await p.close_code())
        await p.end()

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            ws = await connect(url_of(port), max_message=100_000)
            with pytest.raises(wsc.ConnectionClosed) as info:
                await ws.get_message()
            assert info.value.code == bad.code
            await ws.aclose()
    assert sent == [bad.code]


# ---- a peer gone wrong -----------------------------------------------------------------------


async def test_a_reset_mid_frame_is_upstream_lost(reader: TickerReader | None) -> None:
    async def peer(p: Peer) -> None:
        await p.accept()
        await p.stream.send_all(server_frame(wsc.OP_BINARY, b"\x00")
                                + server_frame(wsc.OP_TEXT, b"x" * 1000)[:300])
        p.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            b = KiteBroker(KiteSettings("k", "t", f"http://127.0.0.1:{port}", url_of(port)),
                           reader=reader)
            try:
                with pytest.raises(UpstreamLost, match="ticker closed"):
                    async with b.open_stream() as stream:
                        async for _ in stream:
                            pass
            finally:
                await b.aclose()


async def test_a_peer_that_never_answers_the_close_is_left_after_the_timeout(
    connect: Connect,
) -> None:
    got_close = trio.Event()

    async def peer(p: Peer) -> None:
        await p.accept()
        assert await p.close_code() == 1000
        got_close.set()
        await p.end()  # never answers: the client gives up and closes the TCP connection

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            ws = await connect(url_of(port), close_timeout_s=0.3)
            started = trio.current_time()
            await ws.aclose()
            took = trio.current_time() - started
    assert got_close.is_set()
    assert 0.3 <= took < 1.5


async def test_a_cancelled_owner_still_closes_within_the_timeout(connect: Connect) -> None:
    """aclose under a cancelled scope: shielded, so the close frame goes out, and bounded."""
    codes: list[int | None] = []

    async def peer(p: Peer) -> None:
        await p.accept()
        codes.append(await p.close_code())
        await p.end()

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            ws = await connect(url_of(port), close_timeout_s=0.3)
            with trio.CancelScope() as scope:
                scope.cancel()
                await ws.aclose()
    assert codes == [1000]


async def test_a_silent_ticker_is_a_stall(reader: TickerReader | None) -> None:
    async def peer(p: Peer) -> None:
        await p.accept()
        await p.close_code()  # says nothing, until the client gives up on it
        await p.end()

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            b = KiteBroker(KiteSettings("k", "t", f"http://127.0.0.1:{port}", url_of(port),
                                        stall_timeout_s=0.4), reader=reader)
            try:
                with pytest.raises(UpstreamLost, match="no frame"):
                    async with b.open_stream() as stream:
                        async for _ in stream:
                            pass
            finally:
                await b.aclose()


# ---- TLS (wss://, as real Kite) --------------------------------------------------------------


def self_signed(where: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a fresh self-signed certificate for 127.0.0.1 (its files in
    `where`), and a client context that trusts it."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (where / "cert.pem").write_bytes(pem)
    (where / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(where / "cert.pem", where / "key.pem")
    client = ssl.create_default_context(cadata=pem.decode())
    return server, client


async def test_wss_over_tls_and_an_untrusted_certificate_is_refused(
    tmp_path: Path, connect: Connect,
) -> None:
    server_ctx, client_ctx = self_signed(tmp_path)

    async def serve_tls(*, task_status: trio.TaskStatus[int]) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with listeners[0] as listener:
            task_status.started(listener.socket.getsockname()[1])
            for trusted in (True, False):
                raw = await listener.accept()
                async with trio.SSLStream(raw, server_ctx, server_side=True) as tls:
                    if not trusted:
                        with pytest.raises(trio.BrokenResourceError):
                            await tls.do_handshake()
                        continue
                    p = Peer(tls)  # type: ignore[arg-type]
                    await p.accept(server_frame(wsc.OP_BINARY, b"\x00"))
                    assert await p.frame() == (wsc.OP_TEXT, b"over tls")
                    assert await p.close_code() == 1000
                    await tls.send_all(server_frame(wsc.OP_CLOSE, close_payload(1000)))

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_tls)
            ws = await connect(url_of(port, "wss"), ssl_context=client_ctx)
            assert await ws.get_message() == b"\x00"
            await ws.send_message("over tls")
            await ws.aclose()
            with pytest.raises(wsc.HandshakeError):
                await wsc.connect(url_of(port, "wss"))  # the system's CAs: not this one
