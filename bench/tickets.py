"""What sharing websocket tickets and browser sessions through Redis costs ([cluster], issue 18).

    .venv/bin/python bench/tickets.py [--redis redis://127.0.0.1:6379/0] [--rounds 500]
        [--sockets 1000]

Prints one JSON line per (book, operation), same run: the in-memory books (no `[cluster]`)
against the Redis ones, called directly as the web layer calls them, one at a time:
- ticket: `issue` then `redeem` (the `POST …/ws-ticket` and the handshake that spends it)
- session_get: `get` of a live session (each cookie handshake and cookie ticket request)
- session_check: one check of --sockets sessions holding sockets on this node (Redis only: what
  each node sends every `session_check_s`)
Latency per operation in ms (median, p99, max), and the machine's 1-minute load (the machine is
shared: read the figures as ratios within one run). Keys go under a throwaway prefix, deleted
after.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import coredis
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # ahead of bench/: the package

from supervision.shared_books import RedisSessions, RedisTickets  # noqa: E402
from web.auth import Identity, TicketBook  # noqa: E402
from web.sessions import SessionBook  # noqa: E402
from web.settings import ClusterSettings  # noqa: E402

WHO = Identity("bench-desk", "primary")


class _Socket:
    def close(self, reason: str) -> None:  # pragma: no cover - nothing ends here
        raise AssertionError(f"closed: {reason}")


async def timed(rounds: int, op: Callable[[], Awaitable[object]]) -> list[float]:
    taken = []
    for _ in range(rounds):
        started = time.perf_counter()
        await op()
        taken.append((time.perf_counter() - started) * 1000)
    return taken


def line(book: str, operation: str, taken: list[float], **extra: Any) -> None:
    ordered = sorted(taken)
    print(json.dumps({
        "bench": "tickets", "book": book, "operation": operation, "n": len(taken),
        "median_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "max_ms": round(ordered[-1], 3), "load_1m": round(os.getloadavg()[0], 2), **extra,
    }), flush=True)


async def main(redis_url: str, rounds: int, sockets: int) -> None:
    prefix = f"bench{secrets.token_hex(4)}"
    cluster = ClusterSettings(redis_url=redis_url, node_id="bench", advertised="http://bench",
                              key_prefix=prefix)
    client = coredis.Redis.from_url(redis_url, decode_responses=True)
    async with client:
        try:
            books: dict[str, tuple[Any, Any]] = {
                "memory": (TicketBook(30.0), SessionBook(3600.0)),
                "redis": (RedisTickets(client, cluster, 30.0, 10_000),
                          RedisSessions(client, cluster, 3600.0, 10_000)),
            }
            for name, (tickets, sessions) in books.items():
                async def ticket(t: Any = tickets) -> None:
                    assert await t.redeem(await t.issue(WHO, "primary")) is not None

                line(name, "ticket", await timed(rounds, ticket))
                session = await sessions.open(WHO)
                line(name, "session_get", await timed(rounds, lambda s=sessions, i=session.id:
                                                      s.get(i)))
            redis_sessions = books["redis"][1]
            for _ in range(sockets):
                opened = await redis_sessions.open(Identity("bench-many", "primary"))
                redis_sessions.attach(opened.id, _Socket())
            line("redis", "session_check", await timed(max(1, rounds // 10),
                                                       redis_sessions.check),
                 sessions_with_sockets=sockets)
        finally:
            keys = [k async for k in client.scan_iter(match=f"{{{prefix}:*")]
            for start in range(0, len(keys), 500):
                await client.delete(keys[start:start + 500])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--sockets", type=int, default=1000)
    args = parser.parse_args()
    trio.run(main, args.redis, args.rounds, args.sockets)
