"""Local vs cross-node delivery in a two-node cluster (issue 19, fan-out on Redis Streams).

    .venv/bin/python bench/cross_node.py [--accounts 20] [--subscribers 5] [--rate 20]
        [--seconds 10] [--rounds 2] [--clients 2] [--logs DIR] [--profile DIR]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/0]

A paper venue (`orderdesk venue`) and two `orderdesk serve` nodes with `[cluster]` on a
throwaway Postgres database and one Redis, each its own process. Node a owns every account; b is
a standby, so b's subscribers are fed from the accounts' Redis streams (a appends each committed
update; b's one reader follows them). Phases alternate, --rounds times each, local first in
even rounds and cross first in odd ones (each update costs more as the day's orders pile up,
which must not weigh on one side): `local` connects --subscribers per account to a, `cross`
the same number to b (from --clients client processes, bench/_fanout_clients.py); then MARKET
orders at the venue, --rate updates per second per account (two pushes per order), for
--seconds, as bench/fanout.py drives them.

One JSON line per phase: deliveries, latency venue emit -> client receive (p50/p99, ms), seq
gaps, CPU seconds of a, b and Redis (INFO cpu; the Redis is shared, so approximate) over drive +
drain, and server CPU per delivery (a + b, µs). Then one line comparing the phases (medians over
the rounds) with issue 19's targets: cross-node p50 within 2 ms of local; cross-node CPU per
delivery <= 1.5x local; 0 gaps. --profile: py-spy samples both nodes over each phase's drive +
drain, into DIR/<phase><round>-<node>.txt (collapsed stacks, one per line with its count).
"""

from __future__ import annotations

import argparse
import json
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import coredis
import httpx
import psutil
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fanout_stack import ADMIN_TOKEN, free_port, open_venue, token_for  # noqa: E402
from _pg import throwaway_database  # noqa: E402
from failover import Node, node_toml, start, stop  # noqa: E402
from fanout import Clients, Driver, nifty_future, wait_for_deliveries  # noqa: E402


def quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def cpu(node: Node) -> float:
    assert node.process is not None
    times = psutil.Process(node.process.pid).cpu_times()
    return times.user + times.system


async def redis_cpu(redis: Any) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def owned_by_a(a: Node, accounts: list[str]) -> bool:
    async with httpx.AsyncClient(timeout=2, headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        try:
            found = (await http.get(f"{a.url}/admin/actors")).json()["accounts"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False
    return all((found.get(x, {}).get("owner") or {}).get("state") == "owner" for x in accounts)


@asynccontextmanager
async def profiled(nodes: list[Node], into: Path | None, name: str) -> AsyncIterator[None]:
    """py-spy on every node for the block (nothing without `into`)."""
    if into is None:
        yield
        return
    spies = []
    for node in nodes:
        assert node.process is not None
        spies.append(await trio.lowlevel.open_process([
            str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
            str(node.process.pid), "--format", "raw", "--nonblocking", "--output",
            str(into / f"{name}-{node.name}.txt")], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL))
    try:
        yield
    finally:
        with trio.CancelScope(shield=True):
            for spy in spies:  # on SIGINT py-spy writes what it sampled
                spy.send_signal(signal.SIGINT)
            for spy in spies:
                await spy.wait()


async def phase(kind: str, nodes: list[Node], venue: str, accounts: list[str],
                args: argparse.Namespace, redis: Any, name: str) -> dict[str, Any]:
    node = nodes[0] if kind == "local" else nodes[1]
    clients = Clients(args.clients)
    try:
        specs = [{"account": a, "url": f"ws://127.0.0.1:{node.port}/ws/orders/{a}"
                  f"?access_token={token_for(a)}"}
                 for a in accounts for _ in range(args.subscribers)]
        connected = await clients.connect(specs, False)
        instrument = await nifty_future(venue)
        async with httpx.AsyncClient(base_url=venue, timeout=15) as http:
            warm = Driver(http, instrument)
            async with trio.open_nursery() as nursery:
                for account in accounts:
                    nursery.start_soon(warm.place, account, "BUY")
            counts = await clients.counts()
            want = Counter({a: counts[a] + 2 * args.subscribers for a in accounts})
            await wait_for_deliveries(clients, want, limit_s=10, still_s=2)
            await clients.call("reset")
            driver = Driver(http, instrument)
            async with profiled(nodes, args.profile, name):
                started = [cpu(n) for n in nodes], await redis_cpu(redis), time.monotonic()
                await driver.run(accounts, len(accounts) * args.rate / 2, args.seconds)
                want = Counter({a: 2 * n * args.subscribers for a, n in driver.ok.items()})
                await wait_for_deliveries(clients, want, limit_s=15, still_s=1)
            (cpu_a, cpu_b), cpu_redis = ([cpu(n) - c for n, c in zip(nodes, started[0],
                                                                     strict=True)],
                                         await redis_cpu(redis) - started[1])
            window = time.monotonic() - started[2]
        replies = await clients.call("collect")
    finally:
        await clients.aclose()
    latencies = array("d")
    for reply in replies:
        latencies.frombytes(reply["latencies"])
    ordered = sorted(latencies)
    deliveries = sum(sum(r["per_account"].values()) for r in replies)
    return {
        "phase": kind, "accounts": len(accounts), "subscribers": connected["connected"],
        "connect_failures": connected["failures"],
        "orders": sum(driver.ok.values()), "deliveries": deliveries,
        "expected": 2 * sum(driver.ok.values()) * args.subscribers,
        "p50_ms": round(quantile(ordered, 0.5) * 1000, 2),
        "p99_ms": round(quantile(ordered, 0.99) * 1000, 2),
        "gaps": sum(r["gaps"] for r in replies),
        "closes": dict(sum((Counter(r["closes"]) for r in replies), Counter())),
        "cpu_a_s": round(cpu_a, 3), "cpu_b_s": round(cpu_b, 3), "redis_cpu_s": round(cpu_redis, 3),
        "server_cpu_per_delivery_us": round((cpu_a + cpu_b) / max(1, deliveries) * 1e6, 1),
        "window_s": round(window, 2),
    }


async def run(args: argparse.Namespace, database: str) -> None:
    accounts = [f"acct{i:03d}" for i in range(args.accounts)]
    prefix = f"bench{secrets.token_hex(4)}"
    results: dict[str, list[dict[str, Any]]] = {"local": [], "cross": []}
    with tempfile.TemporaryDirectory(prefix="od-cross-") as tmp:
        work = Path(tmp if args.logs is None else tempfile.mkdtemp(dir=args.logs))
        async with open_venue(work, accounts) as venue_url, \
                coredis.Redis.from_url(args.redis, decode_responses=True) as redis:
            nodes = []
            for name in ("a", "b"):
                port = free_port()
                config = work / f"{name}.toml"
                args.lease, args.renew, args.margin = 4.0, 0.4, 0.4
                config.write_text(node_toml(name, port, database, args, prefix, venue_url,
                                            accounts))
                nodes.append(Node(name, port, config))
            try:
                await start(nodes[0], work)
                with trio.fail_after(120):
                    while True:
                        if await owned_by_a(nodes[0], accounts):
                            break
                        await trio.sleep(0.2)
                await start(nodes[1], work)
                for round_ in range(args.rounds):
                    # local, cross, cross, local, ...: the order books grow phase after phase
                    # (and each update's cost with them), which would otherwise weigh on cross
                    for kind in ("local", "cross")[::1 if round_ % 2 == 0 else -1]:
                        line = await phase(kind, nodes, venue_url, accounts, args, redis,
                                           f"{kind}{round_}")
                        results[kind].append(line)
                        print(json.dumps(line), flush=True)
            finally:
                with trio.CancelScope(shield=True):
                    for node in nodes:
                        await stop(node)
                    keys = [k async for k in redis.scan_iter(match=f"{{{prefix}:*")]
                    if keys:
                        await redis.delete(keys)

    def median(kind: str, field: str) -> float:
        return statistics.median(r[field] for r in results[kind])

    p50_diff = median("cross", "p50_ms") - median("local", "p50_ms")
    cpu_ratio = median("cross", "server_cpu_per_delivery_us") / max(
        1e-9, median("local", "server_cpu_per_delivery_us"))
    gaps = sum(r["gaps"] for rs in results.values() for r in rs)
    print(json.dumps({
        "summary": True, "rounds": args.rounds,
        "local_p50_ms": median("local", "p50_ms"), "cross_p50_ms": median("cross", "p50_ms"),
        "local_p99_ms": median("local", "p99_ms"), "cross_p99_ms": median("cross", "p99_ms"),
        "cross_minus_local_p50_ms": round(p50_diff, 2),
        "cpu_per_delivery_ratio": round(cpu_ratio, 2), "gaps": gaps,
        "targets_met": {"p50_within_2ms": p50_diff <= 2.0, "cpu_ratio_le_1_5": cpu_ratio <= 1.5,
                        "no_gaps": gaps == 0},
    }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=5, help="per account")
    parser.add_argument("--rate", type=float, default=20.0, help="updates/s per account")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--logs", default=None,
                        help="keep the run's configs and logs in a new directory under LOGS")
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy both nodes in each phase, into this directory")
    args = parser.parse_args()
    with throwaway_database(args.postgres, "od_cross") as database:
        trio.run(run, args, database)


if __name__ == "__main__":
    main()
