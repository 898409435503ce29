"""Many accounts in one process: what an idle account costs, and what it costs the busy one.

    .venv/bin/python bench/accounts.py [--accounts 100,1000,10000] [--idle-seconds 10]
        [--seconds 10] [--rate 10] [--connect-rate R] [--gather S] [--profile DIR] [--keep DIR]

For 1 account (the "alone" reference), then each N in --accounts, in turn, fresh processes:

1. a paper venue (`orderdesk venue`, its own process: its CPU is not counted) knowing N
   accounts, and `orderdesk serve` with N paper accounts on a fresh SQLite file, no
   subscribers; `startup_s`: from spawning orderdesk until `/health` says every account's
   upstream is connected; `venue_connect_span_s`: first to last ticker connect at the venue;
2. after `--settle` seconds, the gateway's CPU (user + sys from /proc/PID/stat) over
   `--idle-seconds` of idleness: `idle_cpu_us_per_account_s` and `idle_cpu_core_pct`; RSS
   (/proc/PID/status VmRSS): `rss_per_account_mib` beside the 1-account process's;
   with --profile, py-spy records the gateway over the idle window (collapsed stacks);
3. one subscriber (a separate process) on account a0 while `--rate` MARKET orders a second
   for a0 go in at the venue for --seconds (two pushes each): latency from the venue's emit
   stamp to the subscriber, seq gaps, missing deliveries; `p99_vs_alone`: that p99 over the
   1-account run's.

One JSON line per N. Everything is loopback, bounded in time, and stops by itself.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from array import array
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fanout_stack import open_orderdesk, open_venue, workdir  # noqa: E402
from fanout import Clients, Driver, _quantile, _wait_for, nifty_future  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (/proc/PID/stat fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def venue_pid() -> int | None:
    """Our child running `orderdesk venue` (open_venue yields its URL only)."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if fields[1] == me and b"venue" in cmdline:
            return int(stat.parent.name)
    return None


async def _venue_connects(venue: str) -> list[float]:
    async with httpx.AsyncClient(base_url=venue, timeout=30) as http:
        response = await http.get("/_venue/ticker/connects")
    return sorted(response.json()["data"]["connected_at"])


async def _profile(pid: int, out: Path, seconds: float) -> trio.Process:
    beside = Path(sys.executable).with_name("py-spy")
    spy = str(beside) if beside.exists() else shutil.which("py-spy") or "py-spy"
    return await trio.lowlevel.open_process([
        spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "100",
        "--nonblocking", "--format", "raw", "--output", str(out),
    ])


async def active_latency(
    subscriber: Any, venue: str, clients: Clients, args: argparse.Namespace
) -> dict[str, Any]:
    """One subscriber on a0, `args.rate` MARKET orders a second for a0 at the venue."""
    connected = await clients.connect([subscriber("a0").spec()], deflate=False)
    instrument = await nifty_future(venue)
    async with httpx.AsyncClient(base_url=venue, timeout=15) as http:
        warm = Driver(http, instrument)
        await warm.place("a0", "BUY")
        await _wait_for(clients, Counter({"a0": 2}), limit_s=10, still_s=5)
        await clients.call("reset")
        driver = Driver(http, instrument)
        await driver.run(["a0"], args.rate, args.seconds)
        want = Counter({"a0": 2 * driver.ok["a0"]})
        await _wait_for(clients, want, limit_s=15, still_s=2)
    replies = await clients.call("collect")
    await clients.call("close")
    latencies = sorted(x for r in replies for x in _floats(r["latencies"]))
    deliveries = sum(sum(r["per_account"].values()) for r in replies)
    return {
        "subscribers": connected["connected"],
        "orders": driver.ok["a0"],
        "deliveries": deliveries,
        "missing": want["a0"] - deliveries,
        "gaps": sum(r["gaps"] for r in replies),
        "p50_ms": round(1000 * _quantile(latencies, 0.50), 2),
        "p99_ms": round(1000 * _quantile(latencies, 0.99), 2),
        "max_ms": round(1000 * latencies[-1], 2) if latencies else None,
    }


def _floats(raw: bytes) -> list[float]:
    values = array("d")
    values.frombytes(raw)
    return list(values)


async def measure(n: int, work: Path, clients: Clients, args: argparse.Namespace) -> dict:
    accounts = [f"a{i}" for i in range(n)]
    extra = "[ticker]\n"
    if args.connect_rate:
        extra += f"connect_rate_per_s = {args.connect_rate}\n"
    if args.gather is not None:
        extra += f"read_gather_s = {args.gather}\n"
    async with open_venue(work, accounts) as venue:
        started = time.monotonic()
        async with open_orderdesk(work, venue, accounts, extra_toml=extra,
                                  ready_timeout_s=args.startup_limit) as target:
            startup_s = time.monotonic() - started
            assert target.pid is not None
            pid = target.pid
            connects = await _venue_connects(venue)
            await trio.sleep(args.settle)
            rss = process_rss_mib(pid)
            spy = None
            if args.profile:
                out = Path(args.profile) / f"idle-{n}.txt"
                spy = await _profile(pid, out, args.idle_seconds)
            other = venue_pid()
            venue0 = process_cpu_s(other) if other else math.nan
            cpu0, t0 = process_cpu_s(pid), time.monotonic()
            await trio.sleep(args.idle_seconds)
            idle_cpu, window = process_cpu_s(pid) - cpu0, time.monotonic() - t0
            venue_cpu = process_cpu_s(other) - venue0 if other else math.nan
            if spy is not None:
                with trio.move_on_after(args.idle_seconds + 15):
                    await spy.wait()
            active = await active_latency(target.subscriber, venue, clients, args)
    return {
        "accounts": n,
        "startup_s": round(startup_s, 2),
        "venue_connect_span_s": round(connects[-1] - connects[0], 2) if connects else None,
        "venue_connects": len(connects),
        "connect_rate_per_s": args.connect_rate or "default",
        "read_gather_s": "default" if args.gather is None else args.gather,
        "rss_mib": round(rss, 1),
        "idle_window_s": round(window, 2),
        "idle_cpu_s": round(idle_cpu, 3),
        "idle_cpu_core_pct": round(100 * idle_cpu / window, 2),
        "idle_cpu_us_per_account_s": round(1e6 * idle_cpu / window / n, 2),
        "venue_idle_cpu_core_pct": round(100 * venue_cpu / window, 2),
        "active": active,
        "venue": "separate process (orderdesk venue)",
    }


async def run(args: argparse.Namespace) -> None:
    sizes = [int(x) for x in args.accounts.split(",")]
    clients = Clients(1)
    try:
        with workdir(args.keep, "orderdesk-accounts-") as work:
            alone = await measure(1, work, clients, args)
            _emit(alone)
            for n in sizes:
                line = await measure(n, work, clients, args)
                line["rss_per_account_mib"] = round((line["rss_mib"] - alone["rss_mib"])
                                                    / max(1, n - 1), 4)
                line["p99_alone_ms"] = alone["active"]["p99_ms"]
                line["p99_vs_alone"] = round(line["active"]["p99_ms"]
                                             / max(alone["active"]["p99_ms"], 1e-9), 2)
                _emit(line)
    finally:
        with trio.CancelScope(shield=True):
            await clients.aclose()


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", default="100,1000", help="N,N,... (10000 fits in ~2 GiB)")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=3.0, help="after start-up, before idle")
    parser.add_argument("--seconds", type=float, default=10.0, help="the active account's drive")
    parser.add_argument("--rate", type=float, default=10.0, help="orders/s for the active one")
    parser.add_argument("--connect-rate", type=float, help="[ticker] connect_rate_per_s")
    parser.add_argument("--gather", type=float, help="[ticker] read_gather_s")
    parser.add_argument("--startup-limit", type=float, default=300.0, help="seconds")
    parser.add_argument("--profile", metavar="DIR", help="py-spy record the idle window")
    parser.add_argument("--keep", metavar="DIR", help="keep configs, logs, databases in DIR")
    args = parser.parse_args(argv)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    trio.run(run, args)


if __name__ == "__main__":
    main()
