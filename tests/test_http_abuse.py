"""Abusive HTTP clients leave nothing behind: every socket of a departed peer is closed.

Bodies over the limit get 413 before they are read whole; a request whose head or body never
arrives in full times out; a client that leaves without reading its answer is closed. Checked
on the kernel's own list of the process's sockets (psutil) once the clients are gone.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import psutil
import trio

from supervision.service import Running
from tests.fixtures_service import TOKENS, open_test_service
from tests.fixtures_waits import wait_until
from web import WebConfig

WEB = WebConfig(request_timeout_s=1.0, send_timeout_s=1.0)
AUTH = f"Authorization: Bearer {TOKENS['primary']}\r\n"


def _server_sockets(running: Running) -> list[str]:
    port = int(running.web_bind.rsplit(":", 1)[1])
    return [
        f"{c.status} {c.raddr}"
        for c in psutil.Process().net_connections(kind="tcp")
        if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN
    ]


async def _open(running: Running) -> trio.SocketStream:
    host, port = running.web_bind.rsplit(":", 1)
    return await trio.open_tcp_stream(host, int(port))


async def _answer(stream: trio.SocketStream, timeout_s: float = 5) -> bytes:
    data = b""
    with trio.move_on_after(timeout_s):
        try:
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    return data


async def test_oversized_body_is_refused_before_it_is_read(tmp_path: Path) -> None:
    async with open_test_service(tmp_path, web_config=WEB) as running:
        stream = await _open(running)
        head = (f"POST /accounts/primary/orders HTTP/1.1\r\nHost: x\r\n{AUTH}"
                "Content-Type: application/json\r\nContent-Length: 50000000\r\n\r\n")
        await stream.send_all(head.encode() + b"{" + b" " * 65536)
        with trio.fail_after(5):
            answer = await _answer(stream)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        # the rest of the body is never read as a next request: the server closes
        assert b"connection: close" in answer.lower()
        with trio.fail_after(5):
            try:
                while await stream.receive_some(65536):
                    pass
            except trio.BrokenResourceError:
                pass  # a reset (unread bytes at close) is a close too
        await stream.aclose()


async def test_the_next_request_after_a_413_is_answered(tmp_path: Path) -> None:
    """A client that keeps its connection alive after a 413 (httpx, as most do) gets its next
    request answered: the server said `Connection: close`, so the client reconnects."""
    async with open_test_service(tmp_path, web_config=WEB) as running:
        async with httpx.AsyncClient(base_url=f"http://{running.web_bind}", timeout=10,
                                     headers={"Authorization": f"Bearer {TOKENS['primary']}"}
                                     ) as http:
            for _ in range(10):
                big = await http.post("/accounts/primary/batch-orders",
                                      content=b"{" + b" " * 2_000_000 + b"}",
                                      headers={"Content-Type": "application/json"})
                assert big.status_code == 413
                assert (await http.get("/health")).status_code == 200


async def test_a_client_that_never_reads_is_dropped_after_the_send_deadline(
    tmp_path: Path,
) -> None:
    """Pipelined requests for an 18 KB file, never read: the server's writes block once the
    socket buffers are full, and the send deadline (1 s here) drops the connection."""
    async with open_test_service(tmp_path, web_config=WEB) as running:
        streams = []
        for _ in range(3):
            stream = await _open(running)
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            with trio.move_on_after(1):
                await stream.send_all(b"GET /static/basket.js HTTP/1.1\r\nHost: x\r\n\r\n" * 2000)
            streams.append(stream)
        await wait_until(lambda: not _server_sockets(running), "the server let go", 8,
                         poll_s=0.1)  # the kernel's table
        for stream in streams:  # the clients are still there: the server let go of them
            await stream.aclose()


async def test_abusive_clients_leave_no_socket_behind(tmp_path: Path) -> None:
    async with open_test_service(tmp_path, web_config=WEB) as running:
        big = (f"POST /accounts/primary/batch-orders HTTP/1.1\r\nHost: x\r\n{AUTH}"
               "Content-Type: application/json\r\nContent-Length: 3000000\r\n\r\n").encode()
        kinds = {
            "oversized body, then gone": big + b"[" * 1_100_000,
            "half-sent body, then gone": big + b"{}",
            "half-sent head": b"GET /health HTTP/1.1\r\nHost: x\r\n",
            "half-sent head, kept open": b"GET /health HTTP/1.1\r\nHo",
            "pipelined, never read, kept open": b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" * 30000,
            "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 100,
            "chunked forever": (f"POST /accounts/primary/orders HTTP/1.1\r\nHost: x\r\n{AUTH}"
                                "Transfer-Encoding: chunked\r\n\r\n"
                                + "10000\r\n" + "x" * 65536 + "\r\n").encode() * 20,
        }
        kept: list[trio.SocketStream] = []
        for name, data in kinds.items():
            for _ in range(5):
                stream = await _open(running)
                stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                with trio.move_on_after(1):
                    try:
                        await stream.send_all(data)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
                if name.endswith("kept open"):
                    kept.append(stream)  # never read: the server must time it out
                else:
                    await stream.aclose()
        await wait_until(lambda: not _server_sockets(running), "the server let go", 15,
                         poll_s=0.1)  # the kernel's table
        left = _server_sockets(running)
        for stream in kept:
            await stream.aclose()
        print(json.dumps({"abusive_connections": 5 * len(kinds), "sockets_left": len(left)}))
