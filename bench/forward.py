"""The cost of forwarding: a single order sent to the owner vs to a node that does not own the
account (issue 19, requests on any node).

    .venv/bin/python bench/forward.py [--accounts 10] [--orders 100] [--rounds 3] [--gap 0.02]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379/0]
        [--logs DIR]

A paper venue (`orderdesk venue`) and two `orderdesk serve` nodes with `[cluster]` and the
cluster's secret (ORDERDESK_CLUSTER_SECRET) on a throwaway Postgres database and one Redis, each
its own process. Node a owns every account; b forwards what it is sent to a. Phases alternate,
--rounds times each (owner first in even rounds, forwarded first in odd ones, so the day's
growing book weighs on both alike): --orders single LIMIT orders (resting, far below the
market), one at a time, round-robin over the accounts (each account's order budget of 10 a
second is never the bottleneck), --gap s apart, POSTed to a (`owner`) or to b (`forwarded`).

Each round ends with a `refused` phase: the same orders sent to b with a wrong token (401 from
b itself: what b's own HTTP handling costs, without a forward).

One JSON line per phase: answers by status, client-side latency p50/p90/p99 (ms), CPU seconds of
a and b over the phase and server CPU per order (a + b, ms). Then one line comparing the phases
(medians over the rounds): the forwarding overhead at p50 and the extra CPU per order, with the
load average (the machine may be shared: CPU per order is the steadier figure).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import psutil
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fanout_stack import ADMIN_TOKEN, free_port, open_venue, token_for  # noqa: E402
from _pg import throwaway_database  # noqa: E402
from failover import Node, node_toml, start, stop_all  # noqa: E402
from fanout import nifty_future  # noqa: E402


def quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def cpu_s(node: Node) -> float:
    assert node.process is not None
    times = psutil.Process(node.process.pid).cpu_times()
    return float(times.user + times.system)


async def owned_by(node: Node, accounts: list[str]) -> bool:
    async with httpx.AsyncClient(timeout=2, headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
        try:
            view = (await http.get(f"{node.url}/admin/actors")).json()["accounts"]
        except (httpx.HTTPError, ValueError, KeyError):
            return False
    return all((view.get(a, {}).get("owner") or {}).get("state") == "owner" for a in accounts)


async def phase(name: str, round_: int, target: Node, nodes: list[Node], accounts: list[str],
                symbol: str, args: argparse.Namespace, token: str | None = None
                ) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    cpu_before = [cpu_s(node) for node in nodes]
    async with httpx.AsyncClient(base_url=target.url, timeout=30) as http:
        for i in range(args.orders):
            account = accounts[i % len(accounts)]
            body = {"tradingsymbol": symbol, "exchange": "NFO", "transaction_type": "BUY",
                    "quantity": args.lot, "order_type": "LIMIT", "product": "NRML",
                    "price": args.price}
            started = time.perf_counter()
            response = await http.post(
                f"/accounts/{account}/orders", json=body,
                headers={"Authorization": f"Bearer {token or token_for(account)}"})
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] += 1
            await trio.sleep(args.gap)
    cpu = [after - before for after, before in
           zip((cpu_s(node) for node in nodes), cpu_before, strict=True)]
    ordered = sorted(latencies)
    row = {"phase": name, "round": round_, "orders": args.orders,
           "statuses": {str(k): v for k, v in sorted(statuses.items())},
           "p50_ms": round(quantile(ordered, 0.5), 3), "p90_ms": round(quantile(ordered, 0.9), 3),
           "p99_ms": round(quantile(ordered, 0.99), 3),
           "cpu_a_s": round(cpu[0], 3), "cpu_b_s": round(cpu[1], 3),
           "cpu_per_order_ms": round(sum(cpu) / args.orders * 1000, 3)}
    print(json.dumps(row), flush=True)
    return row


async def run(args: argparse.Namespace, database: str) -> None:
    accounts = [f"acct{i:03d}" for i in range(args.accounts)]
    prefix = f"bench{secrets.token_hex(4)}"
    os.environ["ORDERDESK_CLUSTER_SECRET"] = secrets.token_urlsafe(24)  # the nodes inherit it
    with tempfile.TemporaryDirectory(prefix="od-forward-") as tmp:
        work = Path(tmp if args.logs is None else tempfile.mkdtemp(dir=args.logs))
        async with open_venue(work, accounts) as venue_url:
            instrument = await nifty_future(venue_url)
            args.lot = instrument.lot_size
            nodes = []
            for name in ("a", "b"):
                port = free_port()
                config = work / f"{name}.toml"
                config.write_text(node_toml(name, port, database, args, prefix, venue_url,
                                            accounts).replace(
                    f'node_id = "{name}"',
                    f'node_id = "{name}"\nadvertised = "http://127.0.0.1:{port}"'))
                nodes.append(Node(name, port, config))
            try:
                await start(nodes[0], work)
                with trio.fail_after(120):  # a owns every account, then b starts
                    await _polled(lambda: owned_by(nodes[0], accounts))
                await start(nodes[1], work)
                rows: dict[str, list[dict[str, Any]]] = {"owner": [], "forwarded": [],
                                                        "refused": []}
                for round_ in range(args.rounds):
                    order = [("owner", nodes[0]), ("forwarded", nodes[1])]
                    for name, target in order if round_ % 2 == 0 else order[::-1]:
                        rows[name].append(await phase(name, round_, target, nodes, accounts,
                                                      instrument.tradingsymbol, args))
                    rows["refused"].append(await phase(  # b's own HTTP handling, no forward
                        "refused", round_, nodes[1], nodes, accounts, instrument.tradingsymbol,
                        args, token="not-a-token"))
                print(json.dumps(_summary(rows)), flush=True)
            finally:
                await stop_all(nodes, args.redis, prefix)


async def _polled(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll `check`: what it reads changes in another process (no event tells of it)."""
    while True:
        if await check():
            return
        await trio.sleep(0.1)


def _summary(rows: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    def median(name: str, field: str) -> float:
        return round(statistics.median(r[field] for r in rows[name]), 3)

    return {
        "summary": "forward", "load_average": [round(x, 2) for x in os.getloadavg()],
        "owner_p50_ms": median("owner", "p50_ms"),
        "forwarded_p50_ms": median("forwarded", "p50_ms"),
        "overhead_p50_ms": round(median("forwarded", "p50_ms") - median("owner", "p50_ms"), 3),
        "owner_p99_ms": median("owner", "p99_ms"),
        "forwarded_p99_ms": median("forwarded", "p99_ms"),
        "owner_cpu_per_order_ms": median("owner", "cpu_per_order_ms"),
        "forwarded_cpu_per_order_ms": median("forwarded", "cpu_per_order_ms"),
        "refused_on_b_p50_ms": median("refused", "p50_ms"),
        "refused_on_b_cpu_per_request_ms": median("refused", "cpu_per_order_ms"),
        "all_answered_200": all(set(r["statuses"]) == {"200"}
                                for name in ("owner", "forwarded") for r in rows[name]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=10)
    parser.add_argument("--orders", type=int, default=100, help="orders per phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.02, help="seconds between two orders")
    parser.add_argument("--price", type=float, default=20000.0, help="LIMIT price (resting)")
    parser.add_argument("--lease", type=float, default=4.0, help="[cluster] lease_s")
    parser.add_argument("--renew", type=float, default=0.4, help="[cluster] renew_s")
    parser.add_argument("--margin", type=float, default=0.4, help="[cluster] margin_s")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--logs", default=None,
                        help="keep the run's configs and logs in a new directory under LOGS")
    parser.set_defaults(warm_standby=False, connect_rate=None)  # failover.node_toml's options
    args = parser.parse_args()
    with throwaway_database(args.postgres, "od_forward") as database:
        trio.run(run, args, database)


if __name__ == "__main__":
    main()
