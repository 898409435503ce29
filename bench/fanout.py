"""Websocket fan-out: orderdesk against the asyncio relay peer, same workload, same run.

    .venv/bin/python bench/fanout.py [--configs 1x1,1x100,1x1000@10,200x2@2,1x200]
        [--rate 50] [--seconds 10] [--clients 2] [--deflate] [--profile DIR]
        [--url 'ws://HOST:PORT/ws/orders/{account}?access_token={token}' --venue URL [--pid N]]

A configuration `AxS@R` is A accounts x S subscribers per account x R order updates per second
per account (R defaults to --rate). For each configuration and each target, in turn (one target
at a time: server, relay and clients share the machine):

1. start a fresh paper venue (`orderdesk venue`, its own process) and the target: `orderdesk
   serve` on a fresh SQLite file, or bench/peers/asyncio_relay.py following the venue's ticker;
2. connect A x S subscribers from --clients separate processes (so client CPU is not the
   server's), wait, and diff the server's RSS: `rss_per_idle_subscriber_kib`;
3. warm up (one order per account, until every subscriber has seen it), zero the counters;
4. drive R/2 MARKET orders per second per account at the venue's Kite REST API for --seconds
   (each MARKET order is two pushes, OPEN and COMPLETE), on a fixed schedule, round-robin over
   the accounts, BUY and SELL alternating;
5. drain (until every expected delivery arrived, or nothing moved for a second), then read the
   server's CPU (user+sys, psutil) over drive+drain, RSS, and the clients' figures: deliveries,
   latency from the venue's emit stamp (`order.meta.emitted_at`, wall clock) to the client's
   receive, seq gaps, close codes (4008 = slow consumer).

Prints one JSON line per configuration and target, one ratio line (orderdesk / relay) per
configuration, and a last line checking the targets of issue 4. Everything is loopback, bounded
in count and time, and stops by itself; a full default run takes about four minutes.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import multiprocessing
import sys
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import attrs
import httpx
import psutil
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fanout_clients import worker_main  # noqa: E402
from _fanout_stack import (  # noqa: E402
    Target,
    external_target,
    open_orderdesk,
    open_relay,
    open_venue,
    workdir,
)

DEFAULT_CONFIGS = "1x1,1x100,1x1000@10,200x2@2,1x200"
TARGETS = ("orderdesk", "asyncio_relay")


@attrs.frozen
class Config:
    accounts: int
    subscribers: int  # per account
    rate: float  # order updates per second per account

    @property
    def label(self) -> str:
        return f"{self.accounts}x{self.subscribers}@{self.rate:g}"


def parse_configs(text: str, default_rate: float) -> list[Config]:
    configs = []
    for item in text.split(","):
        shape, _, rate = item.strip().partition("@")
        accounts, _, subscribers = shape.partition("x")
        configs.append(Config(int(accounts), int(subscribers), float(rate or default_rate)))
    return configs


# -- client processes ------------------------------------------------------------------


class Clients:
    """The subscriber processes; every call goes to all of them and returns their replies."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conns = []
        self._procs = []
        for _ in range(count):
            parent, child = context.Pipe()
            proc = context.Process(target=worker_main, args=(child,), daemon=True)
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)

    async def call(self, op: str, per_worker: Sequence[dict] | None = None, **kw: Any) -> list:
        replies: list[Any] = [None] * len(self._conns)

        async def one(i: int) -> None:
            command = {"op": op, **kw, **(per_worker[i] if per_worker else {})}
            conn = self._conns[i]

            def roundtrip() -> Any:
                conn.send(command)
                return conn.recv()

            replies[i] = await trio.to_thread.run_sync(roundtrip, abandon_on_cancel=True)

        async with trio.open_nursery() as nursery:
            for i in range(len(self._conns)):
                nursery.start_soon(one, i)
        return replies

    async def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for reply in await self.call("counts"):
            total.update(reply)
        return total

    async def connect(self, specs: list[dict], deflate: bool) -> dict[str, Any]:
        shares = [specs[i :: len(self._conns)] for i in range(len(self._conns))]
        replies = await self.call(
            "connect", [{"subs": share} for share in shares], concurrency=64, deflate=deflate
        )
        failures: Counter[str] = Counter()
        for reply in replies:
            failures.update(reply["failures"])
        return {"connected": sum(r["connected"] for r in replies), "failures": dict(failures)}

    async def aclose(self) -> None:
        with trio.move_on_after(10):
            await self.call("exit")
        for proc in self._procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()


# -- the workload ----------------------------------------------------------------------


@attrs.frozen
class Instrument:
    tradingsymbol: str
    lot_size: int


async def nifty_future(venue: str) -> Instrument:
    """The nearest NIFTY future in the venue's instrument master (symbols follow the month)."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{venue}/instruments/NFO")
    rows = [r for r in csv.DictReader(io.StringIO(response.text))
            if r["name"] == "NIFTY" and r["instrument_type"] == "FUT"]
    row = min(rows, key=lambda r: r["expiry"])
    return Instrument(row["tradingsymbol"], int(row["lot_size"]))


class Driver:
    """Places MARKET orders at the venue, as the accounts themselves would (Kite REST)."""

    def __init__(self, client: httpx.AsyncClient, instrument: Instrument) -> None:
        self._client = client
        self._instrument = instrument
        self._limit = trio.CapacityLimiter(32)
        self.ok: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    async def place(self, account: str, side: str) -> None:
        async with self._limit:
            try:
                response = await self._client.post(
                    "/orders/regular",
                    data={
                        "tradingsymbol": self._instrument.tradingsymbol,
                        "exchange": "NFO",
                        "transaction_type": side,
                        "order_type": "MARKET",
                        "quantity": str(self._instrument.lot_size),
                        "product": "NRML",
                        "market_protection": "-1",
                    },
                    headers={"X-Kite-Version": "3",
                             "Authorization": f"token paper:paper-{account}"},
                )
            except httpx.HTTPError as exc:
                self.errors[type(exc).__name__] += 1
                return
        if response.status_code == 200:
            self.ok[account] += 1
        else:
            self.errors[str(response.status_code)] += 1

    async def run(self, accounts: Sequence[str], orders_per_s: float, seconds: float) -> None:
        """`orders_per_s` in total, on a fixed schedule (a slow response never delays the next)."""
        total = int(orders_per_s * seconds)
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for k in range(total):
                await trio.sleep_until(start + k / orders_per_s)
                round_, index = divmod(k, len(accounts))
                nursery.start_soon(self.place, accounts[index], "BUY" if round_ % 2 else "SELL")


# -- one measurement -------------------------------------------------------------------


def _cpu(proc: psutil.Process | None) -> float:
    if proc is None:
        return math.nan
    times = proc.cpu_times()
    return times.user + times.system


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy so far (every process, ours and others')."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def _rss(proc: psutil.Process | None) -> float:
    return math.nan if proc is None else float(proc.memory_info().rss)


def _quantile(ordered: Sequence[float], q: float) -> float:
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _round(value: float, digits: int) -> float | None:
    return None if math.isnan(value) else round(value, digits)


async def wait_for_deliveries(
    clients: Clients, want: Counter[str], limit_s: float, still_s: float
) -> None:
    """Until every account's deliveries reach `want`, nothing moved for `still_s`, or the limit."""
    deadline = trio.current_time() + limit_s
    last, moved = -1, trio.current_time()
    while trio.current_time() < deadline:
        counts = await clients.counts()
        if all(counts[a] >= n for a, n in want.items()):
            return
        total = sum(counts.values())
        if total != last:
            last, moved = total, trio.current_time()
        elif trio.current_time() - moved > still_s:
            return
        await trio.sleep(0.1)


async def measure(
    target: Target,
    config: Config,
    venue: str,
    clients: Clients,
    args: argparse.Namespace,
    accounts: Sequence[str],
) -> dict[str, Any]:
    proc = psutil.Process(target.pid) if target.pid is not None else None
    instrument = await nifty_future(venue)
    await trio.sleep(0.5)
    rss_before = _rss(proc)
    specs = [target.subscriber(a).spec() for a in accounts for _ in range(config.subscribers)]
    connected = await clients.connect(specs, args.deflate)
    await trio.sleep(1.0)
    rss_idle = _rss(proc)

    limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
    async with httpx.AsyncClient(base_url=venue, limits=limits, timeout=15) as http:
        warm = Driver(http, instrument)
        for _ in range(5):  # an upstream may still be connecting: retry the accounts not seen
            counts = await clients.counts()
            cold = [a for a in accounts if counts[a] < 2 * config.subscribers]
            if not cold:
                break
            async with trio.open_nursery() as nursery:
                for account in cold:
                    nursery.start_soon(warm.place, account, "BUY")
            want = Counter({a: 2 * config.subscribers for a in accounts})
            await wait_for_deliveries(clients, want, limit_s=5, still_s=2)
        await trio.sleep(0.5)
        await clients.call("reset")

        driver = Driver(http, instrument)
        orders_per_s = config.accounts * config.rate / 2
        profiler = _profile(args, target, config)
        cpu_start, busy_start, started = _cpu(proc), _machine_busy(), time.monotonic()
        async with profiler:
            await driver.run(accounts, orders_per_s, args.seconds)
            drive_s = time.monotonic() - started  # longer than --seconds if the venue lagged
            want = Counter({a: 2 * n * config.subscribers for a, n in driver.ok.items()})
            await wait_for_deliveries(clients, want, limit_s=10, still_s=1)
        cpu_used, window = _cpu(proc) - cpu_start, time.monotonic() - started
        machine_busy = _machine_busy() - busy_start
    rss_end = _rss(proc)

    replies = await clients.call("collect")
    await clients.call("close")
    latencies, emitted = array("d"), array("d")
    per_account: Counter[str] = Counter()
    closes: Counter[str] = Counter()
    untimed = 0
    for reply in replies:
        latencies.frombytes(reply["latencies"])
        emitted.frombytes(reply["emitted"])
        per_account.update(reply["per_account"])
        closes.update(reply["closes"])
        untimed += reply["untimed"]
    ordered = sorted(latencies)
    if args.trace:
        await _write_trace(Path(args.trace), target, config, emitted, latencies)
    deliveries = sum(per_account.values())
    expected = sum(want.values())
    subscribers = connected["connected"]
    return {
        "target": target.name,
        "config": config.label,
        "accounts": config.accounts,
        "subscribers_per_account": config.subscribers,
        "rate_per_s": config.rate,
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / max(drive_s, args.seconds), 1),
        "expected_deliveries": expected,
        "missing": expected - deliveries,
        "server_cpu_s_per_1000_deliveries": _round(1000 * cpu_used / max(deliveries, 1), 4),
        "server_cpu_us_per_delivery": _round(1e6 * cpu_used / max(deliveries, 1), 2),
        "server_cpu_util": _round(cpu_used / window, 3),
        "drive_s": round(drive_s, 2),
        "window_s": round(window, 2),
        # The machine is shared (clients, venue, and whatever else runs): cores busy in all.
        "machine_busy_cores": round(machine_busy / window, 2),
        "latency_ms": {
            "p50": _round(1000 * _quantile(ordered, 0.50), 2),
            "p99": _round(1000 * _quantile(ordered, 0.99), 2),
            "max": _round(1000 * (ordered[-1] if ordered else math.nan), 2),
        },
        "server_rss_mb": _round(rss_end / 2**20, 1),
        "rss_per_idle_subscriber_kib": _round(
            (rss_idle - rss_before) / 1024 / max(subscribers, 1), 1
        ),
        "slow_consumer_closes": closes.get("4008", 0),
        "other_closes": {k: v for k, v in closes.items() if k != "4008"},
        "untimed_deliveries": untimed,
        "gaps": sum(r["gaps"] for r in replies) if target.has_seq else None,
        "subscribers": subscribers,
        "connect_failures": connected["failures"],
        "orders": sum(driver.ok.values()),
        "order_errors": dict(driver.errors),
        "deflate": args.deflate,
    }


async def _write_trace(
    out: Path, target: Target, config: Config, emitted: array, latencies: array
) -> None:
    """Every delivery as `emitted_at,latency_ms`, in emit order: where the spikes are."""
    rows = sorted(zip(emitted, latencies, strict=True))
    text = "emitted_at,latency_ms\n" + "".join(f"{e:.6f},{1000 * x:.3f}\n" for e, x in rows)
    name = f"{target.name}-{config.label.replace('@', '_at_')}.csv"
    await trio.Path(out / name).write_text(text)


def _profile(args: argparse.Namespace, target: Target, config: Config) -> Any:
    if not args.profile or target.pid is None or target.name == "asyncio_relay":
        return nullcontext()
    return _py_spy(Path(args.profile), target, config, args.seconds)


@asynccontextmanager
async def _py_spy(out: Path, target: Target, config: Config, seconds: float) -> AsyncIterator[None]:
    """py-spy record of the server over the drive window, as collapsed stacks (one per line).
    Only the thread holding the GIL is sampled (`--gil`): CPU spent in Python, not a wait in
    epoll or in SQLite's fsync, which the CPU figures do not count either."""
    spy = str(Path(sys.executable).with_name("py-spy"))
    output = out / f"{target.name}-{config.label.replace('@', '_at_')}.txt"
    proc = await trio.lowlevel.open_process([
        spy, "record", "--pid", str(target.pid), "--duration", str(int(seconds)),
        "--rate", "200", "--nonblocking", "--gil", "--format", "raw", "--output", str(output),
    ])
    try:
        yield
    finally:
        with trio.move_on_after(seconds + 10):
            await proc.wait()


# -- the run ---------------------------------------------------------------------------


def ratio_line(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    def ratio(*path: str) -> float | None:
        a, b = ours, peer
        for key in path:
            a, b = a[key], b[key]
        return None if a is None or b in (None, 0) else round(a / b, 2)

    return {
        "ratio": f"{ours['target']}/{peer['target']}",
        "config": ours["config"],
        "cpu_per_delivery": ratio("server_cpu_us_per_delivery"),
        "p99_latency": ratio("latency_ms", "p99"),
        "p50_latency": ratio("latency_ms", "p50"),
        "deliveries_per_s": ratio("deliveries_per_s"),
        "rss_per_idle_subscriber": ratio("rss_per_idle_subscriber_kib"),
    }


def targets_line(results: dict[tuple[str, str], dict[str, Any]], ours: str) -> dict[str, Any]:
    """The four targets of issue 4, judged on this run's lines where the configuration ran."""
    checks: dict[str, Any] = {}
    for (name, label), line in results.items():
        if name != ours:
            continue
        if 8_000 <= line["deliveries_per_s"] <= 12_000:
            checks[f"cpu_us_per_delivery<=25 at {label}"] = line["server_cpu_us_per_delivery"]
        if label == "1x100@50" and (peer := results.get(("asyncio_relay", label))):
            p99, peer_p99 = line["latency_ms"]["p99"], peer["latency_ms"]["p99"]
            met = None if p99 is None or peer_p99 is None else p99 <= 2 * peer_p99
            checks["p99<=2x_relay at 1x100@50"] = {"ours": p99, "relay": peer_p99, "met": met}
        if line["subscribers_per_account"] >= 1000:
            checks[f"no_slow_consumer_closes at {label}"] = line["slow_consumer_closes"] == 0
        if line["subscribers"] >= 100:
            checks[f"idle_subscriber<50KiB at {label}"] = line["rss_per_idle_subscriber_kib"]
    return {"targets": checks}


def _emit(line: dict[str, Any]) -> None:
    print(json.dumps(line), flush=True)


@asynccontextmanager
async def open_target(
    name: str, args: argparse.Namespace, work: Path, accounts: Sequence[str]
) -> AsyncIterator[tuple[Target, str]]:
    """The target `name` and the venue it follows: started here, or the ones given."""
    if args.url:
        if name == "asyncio_relay":
            async with open_relay(work, args.venue, accounts) as target:
                yield target, args.venue
        else:
            yield external_target(args.name, args.url, args.pid), args.venue
        return
    async with open_venue(work, accounts) as venue:
        opener = open_orderdesk if name == "orderdesk" else open_relay
        async with opener(work, venue, accounts) as target:
            yield target, venue


async def run(args: argparse.Namespace) -> None:
    configs = parse_configs(args.configs, args.rate)
    names = [n.strip() for n in args.targets.split(",")]
    ours = args.name if args.url else "orderdesk"
    clients = Clients(args.clients)
    results: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        with workdir(args.keep, "orderdesk-fanout-") as work:
            for config in configs:
                accounts = (args.account_ids.split(",") if args.account_ids
                            else [f"a{i}" for i in range(config.accounts)])[: config.accounts]
                for name in names:
                    async with open_target(name, args, work, accounts) as (target, venue):
                        line = await measure(target, config, venue, clients, args, accounts)
                    results[(line["target"], config.label)] = line
                    _emit(line)
                mine, peer = results.get((ours, config.label)), results.get(
                    ("asyncio_relay", config.label))
                if mine and peer:
                    _emit(ratio_line(mine, peer))
            _emit(targets_line(results, ours))
    finally:
        with trio.CancelScope(shield=True):
            await clients.aclose()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="AxS[@R],... (see above)")
    parser.add_argument("--rate", type=float, default=50.0, help="updates/s per account")
    parser.add_argument("--seconds", type=float, default=10.0, help="drive time per measurement")
    parser.add_argument("--clients", type=int, default=2, help="subscriber processes")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--deflate", action="store_true",
                        help="clients offer permessage-deflate (browsers do)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy record orderdesk into DIR")
    parser.add_argument("--trace", metavar="DIR", help="write every delivery's latency to DIR")
    parser.add_argument("--keep", metavar="DIR", help="keep configs, logs, databases in DIR")
    parser.add_argument("--url", help="measure this websocket URL template ({account}, {token})"
                        " instead of starting orderdesk; needs --venue")
    parser.add_argument("--venue", help="REST URL of the venue behind --url")
    parser.add_argument("--pid", type=int, help="the --url server's pid, for CPU and RSS")
    parser.add_argument("--name", default="orderdesk", help="target name of --url")
    parser.add_argument("--account-ids", help="accounts for --url (default a0,a1,...)")
    args = parser.parse_args(argv)
    if args.url and not args.venue:
        parser.error("--url needs --venue (the REST URL of the venue to drive)")
    for directory in (args.profile, args.trace):
        if directory:
            Path(directory).mkdir(parents=True, exist_ok=True)
    trio.run(run, args)


if __name__ == "__main__":
    main()
