"""No client can end the process: hostile websocket clients while orders flow.

A bounded soak (ORDERDESK_SOAK_S seconds, default 3) against the whole service with the
server's keep-alive pings every 10 ms: every kind of hostile client in tests/hostile_clients.py,
again and again, while orders are placed and well-behaved subscribers listen. The process
lives, the web child never needed a restart, and every well-behaved subscriber sees every seq.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import trio
import trio_websocket

from supervision.service import Running
from tests.fixtures_service import TOKENS, api, open_test_service
from tests.fixtures_web import Reader, place_market
from tests.hostile_clients import Hostile, HostileStats
from web import WebConfig

SOAK_S = float(os.environ.get("ORDERDESK_SOAK_S", "3"))
WEB = WebConfig(ping_interval_s=0.01, send_timeout_s=0.5)


class Listener:
    """A well-behaved subscriber that reads every message as it comes."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        self.seqs: list[int] = []
        self.complete: set[str] = set()
        self.changed = trio.Event()

    async def run(self) -> None:
        while True:
            message = await self.reader.next()
            if message["type"] == "order":
                self.seqs.append(message["seq"])
                if message["order"]["status"] == "COMPLETE":
                    self.complete.add(message["order"]["order_id"])
                self.changed.set()
                self.changed = trio.Event()

    async def wait_complete(self, order_ids: set[str]) -> None:
        while not order_ids <= self.complete:
            await self.changed.wait()


async def _listener(running: Running, nursery: trio.Nursery) -> Listener:
    ws = await trio_websocket.connect_websocket_url(
        nursery, f"ws://{running.web_bind}/ws/orders/primary",
        extra_headers=[(b"Authorization", f"Bearer {TOKENS['primary']}".encode())],
    )
    reader = Reader(ws)
    snapshot = await reader.next()
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == 0
    listener = Listener(reader)
    nursery.start_soon(listener.run)
    return listener


async def test_hostile_clients_cannot_end_the_process(tmp_path: Path) -> None:
    stats = HostileStats()
    async with open_test_service(tmp_path, web_config=WEB) as running:
        async with trio.open_nursery() as nursery:
            listeners = [await _listener(running, nursery) for _ in range(3)]
            hostile = Hostile(running.web_bind, "primary", TOKENS["primary"], stats)
            placed: set[str] = set()
            with trio.move_on_after(SOAK_S):
                async with trio.open_nursery() as soak:
                    for kind in hostile.kinds():
                        soak.start_soon(_again_and_again, kind)
                    while True:
                        placed.add(await place_market(running.venue))
                        await trio.sleep(0.02)
            with trio.fail_after(30):
                for listener in listeners:
                    await listener.wait_complete(placed)
            final = running.actors["primary"].seq
            with trio.fail_after(30):
                for listener in listeners:
                    while listener.seqs[-1] < final:
                        await listener.changed.wait()
            assert stats.upgraded > 0.5 * stats.connections  # the misbehaviour reached the app
            for listener in listeners:
                assert listener.seqs == list(range(1, len(listener.seqs) + 1))  # every seq
            nursery.cancel_scope.cancel()
        async with api(running) as http:
            assert (await http.get("/health")).status_code == 200
        web = running.health.get("web")
        assert web is not None and web.restarts == 0 and web.state == "running"
    print(json.dumps({
        "soak_s": SOAK_S, "hostile_connections": stats.connections,
        "upgraded": stats.upgraded,
        "hostile_frames": stats.frames, "hostile_bytes": stats.bytes, "resets": stats.resets,
        "orders": len(placed), "deliveries": sum(len(x.seqs) for x in listeners),
        "process_alive": True,
    }))


async def _again_and_again(kind) -> None:  # type: ignore[no-untyped-def]
    while True:
        await kind()
