"""Subscriber processes for bench/fanout.py: websocket clients outside the measured server.

Each worker process runs an asyncio loop with `websockets` clients (the cheapest client at hand,
so the clients' CPU disturbs the server as little as possible on a small machine) and answers
commands from the bench over a `multiprocessing` pipe:

    connect  open the given subscribers (bounded concurrency), start one reader each
    counts   deliveries so far per account (the bench polls this while draining)
    reset    zero the counters (after warm-up); the last seq seen per subscriber is kept
    collect  deliveries per account, latency samples, seq gaps, close codes
    close    close every socket
    exit     leave

A reader parses every frame (a single message or a JSON array of messages, in order), counts
`order` messages, takes `now - order.meta.emitted_at` (the venue's wall-clock emit stamp) as the
latency, and checks that `seq` grows by exactly one from the snapshot on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from array import array
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException


class _Sub:
    __slots__ = ("account", "closed_by_us", "deliveries", "gaps", "last_seq", "ws")

    def __init__(self, account: str, ws: ClientConnection) -> None:
        self.account = account
        self.ws = ws
        self.deliveries = 0
        self.gaps = 0
        self.last_seq: int | None = None
        self.closed_by_us = False


class _Worker:
    def __init__(self) -> None:
        self.subs: list[_Sub] = []
        self.latencies = array("d")
        self.emitted = array("d")  # the emit stamps of `latencies`, for a trace over time
        self.untimed = 0  # order messages without meta.emitted_at
        self.readers: set[asyncio.Task[None]] = set()

    async def connect(self, specs: list[dict[str, Any]], concurrency: int, deflate: bool) -> dict:
        gate = asyncio.Semaphore(concurrency)
        failures: Counter[str] = Counter()

        async def open_one(spec: dict[str, Any]) -> None:
            async with gate:
                try:
                    ws = await connect(
                        spec["url"],
                        additional_headers=spec.get("headers") or None,
                        compression="deflate" if deflate else None,
                        max_size=2**24,
                        max_queue=256,
                        ping_interval=None,
                        open_timeout=30,
                    )
                except (OSError, WebSocketException, TimeoutError) as exc:
                    failures[type(exc).__name__] += 1
                    return
            sub = _Sub(spec["account"], ws)
            self.subs.append(sub)
            task = asyncio.create_task(self._read(sub))
            self.readers.add(task)
            task.add_done_callback(self.readers.discard)

        await asyncio.gather(*(open_one(spec) for spec in specs))
        return {"connected": len(self.subs), "failures": dict(failures)}

    async def _read(self, sub: _Sub) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in sub.ws:
                now = time.time()
                data = json.loads(raw)
                for message in data if isinstance(data, list) else (data,):
                    kind = message.get("type")
                    if kind == "order":
                        sub.deliveries += 1
                        emitted = (message["order"].get("meta") or {}).get("emitted_at")
                        if emitted is None:
                            self.untimed += 1
                        else:
                            self.latencies.append(now - emitted)
                            self.emitted.append(emitted)
                        seq = message.get("seq")
                        if seq is not None:
                            if sub.last_seq is not None and seq != sub.last_seq + 1:
                                sub.gaps += 1
                            sub.last_seq = seq
                    elif kind == "snapshot":
                        sub.last_seq = message.get("seq")

    def counts(self) -> dict[str, int]:
        per_account: Counter[str] = Counter()
        for sub in self.subs:
            per_account[sub.account] += sub.deliveries
        return dict(per_account)

    def reset(self) -> None:
        for sub in self.subs:
            sub.deliveries = 0
            sub.gaps = 0
        self.latencies = array("d")
        self.emitted = array("d")
        self.untimed = 0

    def collect(self) -> dict[str, Any]:
        per_account: Counter[str] = Counter()
        closes: Counter[str] = Counter()
        for sub in self.subs:
            per_account[sub.account] += sub.deliveries
            if sub.ws.close_code is not None and not sub.closed_by_us:
                closes[str(sub.ws.close_code)] += 1
        return {
            "per_account": dict(per_account),
            "latencies": self.latencies.tobytes(),
            "emitted": self.emitted.tobytes(),
            "untimed": self.untimed,  # order messages that carried no emit stamp
            "gaps": sum(sub.gaps for sub in self.subs),
            "closes": dict(closes),
            "open": sum(1 for sub in self.subs if sub.ws.close_code is None),
        }

    async def close(self) -> None:
        gate = asyncio.Semaphore(200)

        async def close_one(sub: _Sub) -> None:
            async with gate:
                sub.closed_by_us = sub.ws.close_code is None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(sub.ws.close(), 5)

        await asyncio.gather(*(close_one(sub) for sub in self.subs))
        for task in list(self.readers):
            task.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.subs.clear()


async def _serve(conn: Connection) -> None:
    worker = _Worker()
    while True:
        command = await asyncio.to_thread(conn.recv)
        op = command["op"]
        if op == "connect":
            reply: Any = await worker.connect(
                command["subs"], command.get("concurrency", 64), command.get("deflate", False)
            )
        elif op == "counts":
            reply = worker.counts()
        elif op == "reset":
            worker.reset()
            reply = True
        elif op == "collect":
            reply = worker.collect()
        elif op == "close":
            await worker.close()
            reply = True
        elif op == "exit":
            await worker.close()
            conn.send(True)
            return
        else:
            reply = {"error": f"unknown op {op!r}"}
        conn.send(reply)


def worker_main(conn: Connection) -> None:
    """Entry point of one client process (multiprocessing, spawn)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(conn))
