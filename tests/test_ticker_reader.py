"""The shared ticker reader (`brokers/ticker_reader.py`): many connections read by one task,
heartbeats that wake no consumer, and one connection's fault kept to itself. The peers are the
raw loopback servers of test_ws_client (TLS through the reader is tested there too: every
websocket test runs with and without it)."""

from __future__ import annotations

import socket
import struct

import trio

from brokers import _ws_client as wsc
from brokers.ticker_reader import MAX_EVENTS, open_ticker_reader
from tests.fixtures_waits import wait_until
from tests.test_ws_client import Peer, serve_peer, server_frame, url_of

TIMEOUT_S = 10
HEARTBEAT = server_frame(wsc.OP_BINARY, b"\x00")


class StepCounter(trio.abc.Instrument):
    """How many times each task ran a step."""

    def __init__(self) -> None:
        self.steps: dict[trio.lowlevel.Task, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task] = self.steps.get(task, 0) + 1


async def test_heartbeats_do_not_wake_the_consumer() -> None:
    """Twenty heartbeats, each read by the reader (the socket's `heard_at` moves), while the
    consumer waiting in get_message runs no step; the text after them wakes it once."""
    beats = 20
    counter = StepCounter()
    got: list[str | bytes] = []
    done, added = trio.Event(), trio.Event()

    async def peer(p: Peer) -> None:
        await p.accept()
        await added.wait()
        for _ in range(beats):
            heard = ws.heard_at
            await p.stream.send_all(HEARTBEAT)
            await wait_until(lambda h=heard: ws.heard_at != h, "the reader read it", poll_s=0.005)
        await p.stream.send_all(server_frame(wsc.OP_TEXT, b"order"))
        await p.close_code()

    async def consume(*, task_status: trio.TaskStatus[trio.lowlevel.Task]) -> None:
        task_status.started(trio.lowlevel.current_task())
        got.append(await ws.get_message())
        done.set()

    with trio.fail_after(TIMEOUT_S):
        async with open_ticker_reader() as reader, trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            ws = await wsc.connect(url_of(port), absorb_heartbeats=True)
            reader.add(ws)
            added.set()
            trio.lowlevel.add_instrument(counter)
            try:
                consumer = await nursery.start(consume)
                steps_parked = counter.steps.get(consumer, 0)
                await done.wait()
            finally:
                trio.lowlevel.remove_instrument(counter)
            await ws.aclose()
    assert got == ["order"]
    # parked once; woken once for the text (a heartbeat each would be 20 more)
    assert counter.steps[consumer] - steps_parked <= 2, counter.steps[consumer]


async def test_one_hostile_connection_among_many_leaves_the_others_alone() -> None:
    """Twelve connections on one reader: one breaks the protocol, one resets mid-frame, one
    floods a consumer that does not read; the other nine each get their three orders, and
    the flooded one is left unread (bounded) rather than buffered without end."""
    honest = 9
    results: dict[str, object] = {}

    async def good(p: Peer) -> None:
        await p.accept()
        for i in range(3):
            await p.stream.send_all(HEARTBEAT * 5 + server_frame(wsc.OP_TEXT, f"o{i}".encode()))
        await p.close_code()

    async def violates(p: Peer) -> None:
        await p.accept(HEARTBEAT + server_frame(wsc.OP_TEXT, b"\xff\xfe"))
        results["violation_close"] = await p.close_code()

    async def resets(p: Peer) -> None:
        await p.accept(server_frame(wsc.OP_TEXT, b"x" * 1000)[:300])
        p.stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async def floods(p: Peer) -> None:
        await p.accept()
        frame = server_frame(wsc.OP_BINARY, b"t" * 1000)
        with trio.move_on_after(2):  # until the socket is full: the client stopped reading
            while True:
                await p.stream.send_all(frame * 64)
        results["flood_done"] = True
        await p.end()

    async def read_three(ws: wsc.WebSocket, name: str) -> None:
        results[name] = [await ws.get_message() for _ in range(3)]

    async def read_until_closed(ws: wsc.WebSocket, name: str) -> None:
        try:
            while True:
                await ws.get_message()
        except wsc.ConnectionClosed as exc:
            results[name] = exc.code

    with trio.fail_after(TIMEOUT_S):
        async with open_ticker_reader() as reader, trio.open_nursery() as nursery:
            sockets = {}
            for name, handler in [*((f"good{i}", good) for i in range(honest)),
                                  ("violates", violates), ("resets", resets),
                                  ("floods", floods)]:
                port = await nursery.start(serve_peer, handler)
                sockets[name] = ws = await wsc.connect(url_of(port), absorb_heartbeats=True,
                                                       max_message=100_000,
                                                       close_timeout_s=0.2)
                reader.add(ws)
            async with trio.open_nursery() as readers:
                for i in range(honest):
                    readers.start_soon(read_three, sockets[f"good{i}"], f"good{i}")
                readers.start_soon(read_until_closed, sockets["violates"], "violates")
                readers.start_soon(read_until_closed, sockets["resets"], "resets")
            flooded = sockets["floods"].incoming
            await wait_until(lambda: "flood_done" in results, "the flood", poll_s=0.05)
            assert len(flooded.items) <= 64 + 100 and flooded.queued <= 200_000
            for ws in sockets.values():
                await ws.aclose()
    for i in range(honest):
        assert results[f"good{i}"] == ["o0", "o1", "o2"]
    assert results["violates"] == 1007 and results["violation_close"] == 1007
    assert results["resets"] == 1006
    assert MAX_EVENTS >= len(sockets)


async def test_the_reader_stopping_ends_its_connections() -> None:
    """A reader that stops (cancelled, or crashed and restarted by its supervisor) tells each
    of its connections, whose consumers then reconnect; none waits for ever."""

    async def peer(p: Peer) -> None:
        await p.accept()
        await p.end()

    with trio.fail_after(TIMEOUT_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_peer, peer)
            ws = await wsc.connect(url_of(port))
            async with open_ticker_reader() as reader:
                reader.add(ws)
            try:
                await ws.get_message()
                raise AssertionError("a message from a peer that sent none")
            except wsc.ConnectionClosed as exc:
                assert "reader stopped" in exc.reason
            await ws.aclose()
