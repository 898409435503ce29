"""A soak: the cost that grows with the day (issue 17).

    .venv/bin/python bench/soak.py [--minutes 15] [--accounts 4] [--subscribers 5] [--rate 20]
        [--batch-every 5] [--drop-every 60] [--window 60] [--warmup 1]

A paper venue (`orderdesk venue`) and `orderdesk serve` (fresh SQLite file), each its own
process. For --minutes: --rate MARKET orders a second at the venue in total (round-robin over
the accounts: each is two pushes, OPEN and COMPLETE), a 2-leg batch through orderdesk every
--batch-every seconds, the venue drops every ticker socket every --drop-every seconds. Each of
the accounts x subscribers websockets checks that seq grows by one from its snapshot on (a
snapshot, the answer to a burst, restarts the count) and times each pushed update from the
venue's emit stamp to its receipt.

One JSON line per --window seconds: the server's RSS and CPU, the account's updates so far
(its seq), delivery p50/p99, gaps, and the cost of a subscribe without `since` (a fresh
websocket's snapshot: bytes and ms to its first frame) and of GET /accounts/{id}/orders.
A last line sums it up against the issue's targets: RSS growth after --warmup windows in MiB
per 10,000 updates, as measured and beyond what the replay buffers (bounded, 10,000 frames per
account, estimated from the frames' mean size) took meanwhile (<= 5), the last window's p99
over the first's (<= 1.2), and the snapshot's
size and time in the first and last windows (flat: independent of the day's size).

With --book, no servers: the book's memory and one snapshot's CPU time at 1,000, 10,000 and
40,000 orders a day, bounded and as before (every order held and sent).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import httpx
import psutil
import trio
import trio_websocket
import websockets.sync.client

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _profile  # noqa: E402
import _traced  # noqa: E402
from _fanout_stack import ADMIN_TOKEN, ORDERDESK, open_orderdesk, open_venue, token_for  # noqa: E402
from fanout import Driver, nifty_future  # noqa: E402

MIB = 1024 * 1024


@attrs.define
class Window:
    """What the subscribers saw in one window."""

    latencies: list[float] = attrs.field(factory=list)
    deliveries: int = 0
    gaps: int = 0


@attrs.define
class Watch:
    """The subscribers' shared tallies; `seq` per account: the highest seen."""

    window: Window = attrs.field(factory=Window)
    seq: dict[str, int] = attrs.field(factory=dict)
    gaps: int = 0
    closes: list[str] = attrs.field(factory=list)
    order_bytes: int = 0  # of the `order` messages parsed: their mean size estimates the
    order_frames: int = 0  # replay buffer's
    parsed: dict[str, Any] = attrs.field(factory=dict)  # frame -> decoded: the 5 subscribers
    # of an account receive the same frames; the bench parses each once (its CPU is the
    # machine's too)

    def decode(self, frame: str) -> Any:
        decoded = self.parsed.get(frame)
        if decoded is None:
            decoded = json.loads(frame)
            if len(self.parsed) > 1_000:
                self.parsed.clear()
            self.parsed[frame] = decoded
            if isinstance(decoded, dict) and decoded.get("type") == "order":
                self.order_bytes += len(frame)
                self.order_frames += 1
        return decoded


async def subscriber(url: str, account: str, watch: Watch) -> None:
    """Read one account's stream until cancelled, checking seq and timing each push."""
    headers = [(b"Authorization", f"Bearer {token_for(account)}".encode())]
    async with trio_websocket.open_websocket_url(url, extra_headers=headers,
                                                 message_queue_size=10_000) as ws:
        last: int | None = None
        while True:
            try:
                frame = await ws.get_message()
            except trio_websocket.ConnectionClosed as exc:
                watch.closes.append(f"{account}: {exc.reason}")
                return
            now = time.time()
            decoded = watch.decode(frame)
            for message in decoded if isinstance(decoded, list) else [decoded]:
                kind = message.get("type")
                if kind == "snapshot":
                    last = message["seq"]
                elif kind == "order":
                    seq = message["seq"]
                    if last is not None and seq != last + 1:
                        watch.gaps += 1
                        watch.window.gaps += 1
                    last = seq
                    watch.seq[account] = max(watch.seq.get(account, 0), seq)
                    watch.window.deliveries += 1
                    emitted = (message["order"].get("meta") or {}).get("emitted_at")
                    if emitted is not None:
                        watch.window.latencies.append(now - emitted)


def _first_frame(url: str, account: str) -> tuple[str, float]:
    """A fresh websocket's first frame (the snapshot) and the ms to it, connect included;
    the sync client in a thread: its close is not raced by the server's pings."""
    started = time.perf_counter()
    with websockets.sync.client.connect(
            url, additional_headers={"Authorization": f"Bearer {token_for(account)}"},
            max_size=None) as ws:
        first = ws.recv()
    return str(first), (time.perf_counter() - started) * 1000


async def probe_snapshot(base_ws: str, base_http: str, account: str) -> dict[str, float]:
    """A subscribe without `since` and GET /orders: bytes and ms of each."""
    first, snapshot_ms = await trio.to_thread.run_sync(
        _first_frame, f"{base_ws}/ws/orders/{account}", account)
    message = json.loads(first)
    async with httpx.AsyncClient(timeout=30) as client:
        started = time.perf_counter()
        response = await client.get(f"{base_http}/accounts/{account}/orders",
                                    headers={"Authorization": f"Bearer {token_for(account)}"})
        orders_ms = (time.perf_counter() - started) * 1000
    return {"snapshot_bytes": len(first.encode()), "snapshot_ms": round(snapshot_ms, 2),
            "snapshot_orders": len(message.get("orders", [])),
            "orders_route_bytes": len(response.content), "orders_route_ms": round(orders_ms, 2)}


async def batches(base_http: str, accounts: Sequence[str], symbol: str, lot: int,
                  every_s: float, errors: list[str]) -> None:
    """A 2-leg batch (BUY and SELL of the same future) every `every_s`, round-robin."""
    async with httpx.AsyncClient(base_url=base_http, timeout=30) as client:
        for n in itertools.count():
            await trio.sleep(every_s)
            account = accounts[n % len(accounts)]
            legs = [{"tradingsymbol": symbol, "exchange": "NFO", "transaction_type": side,
                     "quantity": lot, "order_type": "MARKET", "product": "NRML"}
                    for side in ("BUY", "SELL")]
            try:
                response = await client.post(
                    f"/accounts/{account}/batch-orders", json={"orders": legs},
                    headers={"Authorization": f"Bearer {token_for(account)}",
                             "Idempotency-Key": f"soak-{n}"})
                if response.status_code != 200:
                    errors.append(f"batch {response.status_code}")
            except httpx.HTTPError as exc:
                errors.append(f"batch {type(exc).__name__}")


async def drops(venue: str, every_s: float, errors: list[str]) -> None:
    """The venue closes every ticker socket every `every_s` (orderdesk reconnects); a venue
    too busy to answer in time (under tracemalloc) is counted, not the bench's end."""
    async with httpx.AsyncClient(base_url=venue, timeout=10) as client:
        while True:
            await trio.sleep(every_s)
            try:
                await client.post("/_venue/faults", json={"drop_ticker": True},
                                  headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            except httpx.HTTPError as exc:
                errors.append(f"drop {type(exc).__name__}")


async def orders(driver: Driver, accounts: Sequence[str], rate: float) -> None:
    """`rate` MARKET orders a second at the venue on a fixed schedule, round-robin."""
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for k in itertools.count():
            await trio.sleep_until(start + k / rate)
            round_, index = divmod(k, len(accounts))
            nursery.start_soon(driver.place, accounts[index], "BUY" if round_ % 2 else "SELL")


def _retention(args: argparse.Namespace) -> str:
    """The server's `[retention]` book sizes (smaller: the caps are reached, and the RSS
    judged, sooner) and `[ticker] reconcile_interval_s`, when given."""
    lines = [f"{key} = {value}" for key, value in (
        ("snapshot_finished_orders", args.snapshot_finished),
        ("book_finished_orders", args.book_finished)) if value is not None]
    toml = "[retention]\n" + "\n".join(lines) + "\n" if lines else ""
    if args.reconcile_interval is not None:
        toml += f"[ticker]\nreconcile_interval_s = {args.reconcile_interval}\n"
    return toml


def _replay_bytes(watch: Watch, cap: int) -> float:
    """What the replay buffers hold by now, estimated: min(seq, cap) frames per account at
    the mean order frame's size, plus each entry's str, tuple, int and deque slot."""
    mean = watch.order_bytes / watch.order_frames if watch.order_frames else 0.0
    return sum(min(seq, cap) for seq in watch.seq.values()) * (mean + 49 + 56 + 28 + 8)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def summary(lines: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    base = lines[min(warmup, len(lines) - 1) - 1] if warmup else None
    last = lines[-1]
    growth = net = None
    if base is not None and last["updates"] > base["updates"]:
        per_10k = 10_000 / (last["updates"] - base["updates"])
        growth = round((last["rss_mib"] - base["rss_mib"]) * per_10k, 3)
        net = round((last["rss_mib"] - base["rss_mib"] - last["replay_est_mib"]
                     + base["replay_est_mib"]) * per_10k, 3)
    first_p99, last_p99 = lines[0]["p99_ms"], last["p99_ms"]
    ratio = round(last_p99 / first_p99, 3) if first_p99 and last_p99 else None
    return {
        "summary": "soak", "windows": len(lines), "updates": last["updates"],
        "gaps": sum(line["gaps"] for line in lines),
        "rss_growth_mib_per_10k_updates_after_warmup": growth,
        "rss_growth_beyond_replay_buffer_mib_per_10k": net,
        "rss_target_met": net is not None and net <= 5,
        "p99_first_ms": first_p99, "p99_last_ms": last_p99, "p99_last_over_first": ratio,
        "p99_target_met": ratio is not None and ratio <= 1.2,
        "snapshot_bytes_first_last": [lines[0]["snapshot_bytes"], last["snapshot_bytes"]],
        "snapshot_ms_first_last": [lines[0]["snapshot_ms"], last["snapshot_ms"]],
        "orders_route_ms_first_last": [lines[0]["orders_route_ms"], last["orders_route_ms"]],
        "cpu_pct_first_last": [lines[0]["cpu_pct"], last["cpu_pct"]],
        "venue_cpu_pct_first_last": [lines[0]["venue_cpu_pct"], last["venue_cpu_pct"]],
        "venue_rss_mib_first_last": [lines[0]["venue_rss_mib"], last["venue_rss_mib"]],
        "machine_load_1m": round(psutil.getloadavg()[0], 2), "cpus": psutil.cpu_count(),
    }


def _launcher(args: argparse.Namespace, name: str) -> tuple[str, ...]:
    """How a server is started: `orderdesk`, or (--trace-dir) under bench/_traced.py."""
    if args.trace_dir is None:
        return (ORDERDESK,)
    return (sys.executable, str(Path(__file__).with_name("_traced.py")),
            str(args.trace_dir / name), str(args.tracemalloc))


def _venue_process(server: psutil.Process) -> psutil.Process:
    """The venue: the bench's other child (started before orderdesk)."""
    children = [c for c in psutil.Process().children() if c.pid != server.pid]
    return next(c for c in children if "venue" in " ".join(c.cmdline()))


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def _trace_window(args: argparse.Namespace, procs: dict[str, psutil.Process],
                        label: str) -> None:
    """This window's py-spy record of each server (--py-spy), then its collector's pauses
    so far and (--tracemalloc) a heap snapshot."""
    if args.py_spy:
        async with trio.open_nursery() as nursery:
            for name, proc in procs.items():
                nursery.start_soon(_profile.record, args.py_spy, proc.pid, args.window - 3,
                                   args.trace_dir / f"{name}-{label}.txt")
    for proc in procs.values():
        proc.send_signal(signal.SIGUSR1)


def _trace_report(args: argparse.Namespace, names: Sequence[str]) -> None:
    """The tops: py-spy's early and late window, the collector's pauses by each, tracemalloc's
    growth between them."""
    for name in names:
        if args.py_spy:
            for label in ("early", "late"):
                top = _profile.tops(args.trace_dir / f"{name}-{label}.txt")
                print(json.dumps({"profile": name, "window": label, **top}), flush=True)
        snapshots = args.trace_dir / name
        last = "1.tm" if args.tracemalloc else "1.gc.json"
        for _ in range(600):  # the last one is written as the server reads the signal
            if (snapshots / last).exists():
                break
            time.sleep(0.1)
        for number, label in enumerate(("early", "late")):
            path = snapshots / f"{number}.gc.json"
            if path.exists():
                print(json.dumps({"gc": name, "by_end_of": label,
                                  **json.loads(path.read_text())}), flush=True)
        if args.tracemalloc:
            print(json.dumps({"tracemalloc": name, "grew_between_early_and_late":
                              _traced.diff_tops(snapshots / "0.tm", snapshots / "1.tm")}),
                  flush=True)


async def run(args: argparse.Namespace) -> None:
    accounts = [f"s{n}" for n in range(args.accounts)]
    windows = max(1, int(args.minutes * 60 / args.window))
    traced = {min(args.warmup, windows - 1): "early", windows - 1: "late"}
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        async with open_venue(work, accounts, _launcher(args, "venue")) as venue, \
                open_orderdesk(work, venue, accounts, extra_toml=_retention(args),
                               launcher=_launcher(args, "orderdesk")) as target, \
                httpx.AsyncClient(base_url=venue, timeout=15) as http:
            assert target.http_url is not None and target.pid is not None
            proc = psutil.Process(target.pid)
            venue_proc = _venue_process(proc)
            base_ws = "ws" + target.http_url.removeprefix("http")
            instrument = await nifty_future(venue)
            watch, errors, lines = Watch(), [], []
            async with trio.open_nursery() as nursery:
                for account in accounts:
                    for _ in range(args.subscribers):
                        nursery.start_soon(subscriber, f"{base_ws}/ws/orders/{account}",
                                           account, watch)
                await trio.sleep(1.0)
                nursery.start_soon(orders, Driver(http, instrument), accounts, args.rate)
                nursery.start_soon(batches, target.http_url, accounts,
                                   instrument.tradingsymbol, instrument.lot_size,
                                   args.batch_every, errors)
                nursery.start_soon(drops, venue, args.drop_every, errors)
                cpu_before, venue_before = _cpu(proc), _cpu(venue_proc)
                started = time.monotonic()
                for index in range(windows):
                    if index in traced and args.trace_dir is not None:
                        nursery.start_soon(_trace_window, args,
                                           {"orderdesk": proc, "venue": venue_proc},
                                           traced[index])
                    await trio.sleep(args.window)
                    window, watch.window = watch.window, Window()
                    cpu, venue_cpu, now = _cpu(proc), _cpu(venue_proc), time.monotonic()
                    line = {
                        "window": index, "t_s": round(now - started, 1),
                        "rss_mib": round(proc.memory_info().rss / MIB, 2),
                        "cpu_pct": round((cpu - cpu_before) / (now - started) * 100, 1),
                        "venue_rss_mib": round(venue_proc.memory_info().rss / MIB, 2),
                        "venue_cpu_pct": round((venue_cpu - venue_before) / (now - started)
                                               * 100, 1),
                        "updates": sum(watch.seq.values()),
                        "replay_est_mib": round(_replay_bytes(watch, args.replay_cap) / MIB, 2),
                        "deliveries": window.deliveries, "gaps": window.gaps,
                        "p50_ms": _ms(_quantile(window.latencies, 0.5)),
                        "p99_ms": _ms(_quantile(window.latencies, 0.99)),
                        **await probe_snapshot(base_ws, target.http_url, accounts[0]),
                        "errors": len(errors), "closes": len(watch.closes),
                        "load_1m": round(psutil.getloadavg()[0], 2),
                    }
                    cpu_before, venue_before, started = cpu, venue_cpu, now
                    lines.append(line)
                    print(json.dumps(line), flush=True)
                nursery.cancel_scope.cancel()
            print(json.dumps(summary(lines, args.warmup)), flush=True)
            _trace_report(args, ("orderdesk", "venue"))


def book_lines(sizes: Sequence[int], keep: int, shown: int) -> None:
    """In process, no I/O (robust to a loaded machine): an account's book after a day of
    `sizes` orders (each OPEN then COMPLETE), bounded (`keep` final orders held, `shown` in
    the snapshot) and as it was before (every order held and sent): the book's memory
    (tracemalloc) and one snapshot's CPU time and size."""
    import tracemalloc

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # before bench/store.py
    from actors.account.book import OrderBook
    from actors.account.frames import snapshot_frame
    from brokers.kite import parse_order

    for size in sizes:
        for bounded in (True, False):
            tracemalloc.start()
            book = OrderBook(keep_finished=keep if bounded else 10**9)
            for n in range(size):
                for status in ("OPEN", "COMPLETE"):
                    book.apply(parse_order(_payload(n, status)))
                    book.commit()
            held = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            started = time.process_time()
            for _ in range(5):
                orders, older = book.snapshot(shown if bounded else 10**9)
                frame = snapshot_frame("acc", 2 * size, "connected", orders, older)
            print(json.dumps({
                "book": "bounded" if bounded else "unbounded (before)", "day_orders": size,
                "book_mib": round(held / MIB, 2),
                "snapshot_cpu_ms": round((time.process_time() - started) / 5 * 1000, 2),
                "snapshot_bytes": len(frame), "snapshot_orders": len(orders)}), flush=True)


def _payload(n: int, status: str) -> dict[str, Any]:
    """A Kite order payload of the usual size (about 800 bytes of JSON)."""
    filled = 75 if status == "COMPLETE" else 0
    return {
        "order_id": f"2512{n:011d}", "exchange_order_id": f"13{n:014d}", "parent_order_id": None,
        "status": status, "status_message": None, "status_message_raw": None,
        "order_timestamp": "2026-12-01 10:00:00", "exchange_update_timestamp":
        "2026-12-01 10:00:01", "exchange_timestamp": "2026-12-01 10:00:01", "variety": "regular",
        "modified": False, "exchange": "NFO", "tradingsymbol": "NIFTY26DECFUT",
        "instrument_token": 13238786, "order_type": "MARKET", "transaction_type": "BUY",
        "validity": "DAY", "validity_ttl": 0, "product": "NRML", "quantity": 75,
        "disclosed_quantity": 0, "price": 0, "trigger_price": 0, "average_price":
        24000.0 if filled else 0, "filled_quantity": filled, "pending_quantity": 75 - filled,
        "cancelled_quantity": 0, "market_protection": -1, "meta": {}, "tag": f"od{n:08d}",
        "guid": f"{n:016x}", "placed_by": "paper", "user_id": "paper"}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--accounts", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0, help="orders a second, in total")
    parser.add_argument("--batch-every", type=float, default=5.0)
    parser.add_argument("--drop-every", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=60.0, help="seconds per line")
    parser.add_argument("--warmup", type=int, default=1, help="windows before RSS is judged")
    parser.add_argument("--replay-cap", type=int, default=10_000,
                        help="the server's replay buffer per account (ActorConfig)")
    parser.add_argument("--snapshot-finished", type=int, help="[retention] of the server")
    parser.add_argument("--book-finished", type=int, help="[retention] of the server")
    parser.add_argument("--reconcile-interval", type=float,
                        help="[ticker] reconcile_interval_s of the server (each lists the day)")
    parser.add_argument("--book", action="store_true",
                        help="only the in-process book figures (no servers): its memory and "
                             "a snapshot's cost at 1,000 / 10,000 / 40,000 orders a day")
    parser.add_argument("--trace-dir", type=Path,
                        help="run both servers under bench/_traced.py (their collector's "
                             "pauses timed) and write there; with --py-spy and --tracemalloc")
    parser.add_argument("--py-spy", help="py-spy's path: profile both servers (--gil) in the "
                                         "window after warm-up and in the last one")
    parser.add_argument("--tracemalloc", type=int, metavar="FRAMES", default=0,
                        help="run both servers under tracemalloc (FRAMES deep) and print what "
                             "grew between the end of those two windows")
    args = parser.parse_args(argv)
    if args.book:
        book_lines((1_000, 10_000, 40_000), keep=1_000, shown=500)
        return
    trio.run(run, args)


if __name__ == "__main__":
    main()
