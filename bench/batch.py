"""Batch latency: the coordinator's parallel legs against the same legs one after another.

    .venv/bin/python bench/batch.py [--latencies 0,20,50] [--legs 2,4,10] [--runs 5]

The paper venue runs as its own process (`orderdesk venue`, no order-rate limit, funds without
end) and the whole orderdesk service runs in this process (`open_service`, SQLite in a temp dir,
production `BatchConfig`), so the bench can read the account's rate limiter. For each venue REST
latency (`POST /_venue/faults {"latency_ms": n}`; the ticker is not delayed) it measures, `--runs`
times each, interleaved:

- `parallel`: `POST /accounts/primary/batch-orders` over HTTP, N MARKET legs (NIFTY options,
  BUY and SELL alternating), until the answer (`success`, every leg COMPLETE). Everything a
  client waits for: validation, the margin pre-check at the broker, write-ahead, placing, fills.
- `sequential`: the same legs the way the replaced system placed them: one order, wait for it to
  be COMPLETE, then the next. Driven through the coordinator's own order primitives
  (`OrderOps.send` + `follow`, the same Kite adapter and ticker), with no HTTP, no margin check
  and no store writes: the cheapest sequential there is, so the speed-up is a lower bound.
- `one_leg`: a one-leg batch over HTTP, "one leg's round trip" through the same path as
  `parallel`; `venue_place`: one bare `POST /orders/regular` at the venue (its answer only);
  `margin_check`: the pre-trade check a batch makes before placing (basket margin and available
  funds, asked at once): one REST round trip that `sequential` does not pay.
- `rollback`: an N-leg batch whose last leg's symbol the venue rejects (`reject_symbols`): the
  answer `rolled_back` after the filled legs are flattened.

Rate limiter: the coordinator's per-account limiter runs at production settings, at most 10
writes in any sliding second (Kite's rule) with `BatchConfig.rate_burst = None`, i.e. all 10 may
go at once. Before every run the bench waits until the window is empty again, so a batch of up to
10 writes never waits for a grant: a 10-leg batch uses the whole second. A rollback of N legs
needs N + (N - 1) writes (or more): past 10 it waits for the next second, and its line says so
(`limiter_bound`). `writes` is the number of grants the run took.

Prints one JSON line per (latency, what, legs) with p50/min/max in ms, then one `targets` line per
latency: a 10-leg parallel batch within 2 x one leg's round trip + 10 ms (checked against the
one-leg batch, and against the bare venue place for reference), and the speed-up over sequential
(target: at least 4x at 50 ms, for 10 legs), also with the margin check added to sequential.
The machine is shared with the venue process: figures at 0 ms are mostly CPU and fsync
(SQLite `synchronous=FULL`, three leg writes per leg) and vary from run to run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _fanout_stack import open_venue  # noqa: E402

from actors.orders import BatchCoordinator, Leg, new_batch_id, tag_for  # noqa: E402
from actors.ratelimit import Priority  # noqa: E402
from brokers.base import OrderRequest  # noqa: E402
from brokers.paper.config import IST  # noqa: E402
from brokers.paper.instruments import builtin_master  # noqa: E402
from supervision.service import Running, open_service  # noqa: E402
from supervision.settings import load_settings  # noqa: E402

TOKEN = "bench-primary"
GATEWAY_TOML = """
[server]
bind = "127.0.0.1:0"
admin_token = "bench-admin"

[database]
url = "sqlite:///{work}/batch.db"

# Kite's 10 writes a second stay (production); its minute and day budgets (200 and 3,000, less
# a reserve of 20) would refuse the bench's own repeated runs: one `--runs 5` pass of the
# default legs takes several hundred writes in a few minutes.
[limits]
orders_per_minute = 0
orders_per_day = 0

[[accounts]]
id = "primary"
broker = "paper"
rest_url = "{rest}"
ticker_url = "{ticker}"
tokens = ["{token}"]
"""


def _symbols() -> tuple[list[str], str]:
    """Ten NIFTY calls of the nearest expiry around the money, and a put the venue rejects."""
    master = builtin_master(dt.datetime.now(IST).date(), {})
    options = [i for i in master.instruments if i.name == "NIFTY" and i.is_option]
    expiry = min(i.expiry for i in options if i.expiry is not None)
    near = {(i.instrument_type, i.strike): i.tradingsymbol for i in options if i.expiry == expiry}
    calls = [near[("CE", 23800.0 + 50 * k)] for k in range(10)]
    return calls, near[("PE", 23500.0)]


CALLS, REJECTED = _symbols()


def legs(n: int, reject_last: bool = False) -> list[dict[str, Any]]:
    out = [{"tradingsymbol": CALLS[k], "exchange": "NFO",
            "transaction_type": "BUY" if k % 2 == 0 else "SELL", "quantity": 75,
            "order_type": "MARKET", "product": "NRML"} for k in range(n)]
    if reject_last:
        out[-1] = {**out[-1], "tradingsymbol": REJECTED}
    return out


@attrs.define
class Bench:
    running: Running
    api: httpx.AsyncClient  # orderdesk, as account primary
    venue: httpx.AsyncClient  # the venue: Kite API as primary, and /_venue

    @property
    def coordinator(self) -> BatchCoordinator:
        return self.running.batches

    @property
    def burst(self) -> int:
        config = self.coordinator.config  # RateLimiter's default burst: int(rate), at least 1
        if config.rate_burst is not None:
            return config.rate_burst
        return max(1, int(config.rate_per_s))

    async def full_bucket(self) -> int:
        """Wait until the account's limiter has its whole burst again; its granted count."""
        limiter = self.coordinator.limiter("primary")
        assert limiter is not None
        stats = limiter.statistics()
        if stats.full_in > 0:
            await trio.sleep(stats.full_in + 0.002)
        stats = limiter.statistics()
        assert stats.tokens >= self.burst - 1e-6 and stats.waiting == 0, stats
        return stats.granted

    def granted(self) -> int:
        limiter = self.coordinator.limiter("primary")
        assert limiter is not None
        return limiter.statistics().granted

    async def faults(self, **values: Any) -> None:
        response = await self.venue.post("/_venue/faults", json=values)
        assert response.status_code == 200, response.text

    async def batch(self, orders: list[dict[str, Any]], expect: str) -> None:
        response = await self.api.post("/accounts/primary/batch-orders",
                                       json={"orders": orders, "rollback_on_failure": True})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == expect, response.text

    async def sequential(self, orders: list[dict[str, Any]]) -> None:
        """One order at a time, each COMPLETE before the next: the replaced system's way."""
        actor = self.running.actors["primary"]
        limiter = self.coordinator.limiter("primary")
        assert limiter is not None
        ops, config = self.coordinator.ops, self.coordinator.config
        batch_id = new_batch_id()
        for n, order in enumerate(orders):
            tag = tag_for(batch_id, n, "L", 0)
            request = OrderRequest(order["tradingsymbol"], "NFO", order["transaction_type"],
                                   "MARKET", order["quantity"], "NRML", tag=tag,
                                   market_protection=config.market_protection)
            leg = Leg(n, tag, request)
            deadline = trio.current_time() + 10
            with actor.watch(tag) as updates:
                await ops.send(actor, limiter, None, leg, Priority.NORMAL, deadline)
                await ops.follow(actor, leg, updates, deadline)
            assert leg.complete, leg

    async def margin_check(self, orders: list[dict[str, Any]]) -> None:
        """The batch's pre-trade check alone, as the coordinator asks it: basket margin and
        available funds, both at once."""
        broker = self.running.actors["primary"].broker
        requests = [OrderRequest(o["tradingsymbol"], "NFO", o["transaction_type"], "MARKET",
                                 o["quantity"], "NRML", market_protection=-1) for o in orders]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broker.basket_margins, requests)
            nursery.start_soon(broker.available_funds)

    async def venue_place(self) -> None:
        form = {"exchange": "NFO", "tradingsymbol": CALLS[0], "transaction_type": "BUY",
                "order_type": "MARKET", "quantity": 75, "product": "NRML",
                "market_protection": -1, "validity": "DAY"}
        response = await self.venue.post("/orders/regular", data=form)
        assert response.status_code == 200, response.text


async def measure(
    bench: Bench, runs: list[float], writes: list[int], action: Callable[[], Awaitable[None]]
) -> None:
    before = await bench.full_bucket()
    started = time.perf_counter()
    await action()
    runs.append((time.perf_counter() - started) * 1000)
    writes.append(bench.granted() - before)


def line(what: str, latency: int, n: int | None, runs: list[float], writes: list[int],
         burst: int) -> dict[str, Any]:
    out: dict[str, Any] = {"bench": "batch", "what": what, "latency_ms": latency}
    if n is not None:
        out["legs"] = n
    out.update(runs=len(runs), p50_ms=round(statistics.median(runs), 1),
               min_ms=round(min(runs), 1), max_ms=round(max(runs), 1))
    if writes and max(writes):
        out["writes"] = max(writes)
        out["limiter_bound"] = max(writes) > burst
    print(json.dumps(out), flush=True)
    return out


async def run_latency(bench: Bench, latency: int, leg_counts: list[int], repeat: int) -> None:
    await bench.faults(latency_ms=latency, reject_symbols=[])
    for _ in range(2):  # warm-up: connections, instrument cache, the path's first use
        await bench.batch(legs(2), "success")
        await bench.sequential(legs(1))
    keys = ([("one_leg", 1), ("venue_place", None), ("margin_check", max(leg_counts))]
            + [(mode, n) for n in leg_counts for mode in ("parallel", "sequential")]
            + [("rollback", n) for n in leg_counts])
    runs: dict[tuple[str, int | None], list[float]] = {key: [] for key in keys}
    writes: dict[tuple[str, int | None], list[int]] = {key: [] for key in keys}
    for _ in range(repeat):  # interleaved, so drift touches every figure alike
        for what, n in keys:
            if what == "one_leg":
                action = lambda: bench.batch(legs(1), "success")  # noqa: E731
            elif what == "venue_place":
                action = bench.venue_place
            elif what == "margin_check":
                action = lambda n=n: bench.margin_check(legs(n))  # noqa: E731
            elif what == "parallel":
                action = lambda n=n: bench.batch(legs(n), "success")  # noqa: E731
            elif what == "sequential":
                action = lambda n=n: bench.sequential(legs(n))  # noqa: E731
            else:
                await bench.faults(reject_symbols=[REJECTED])
                action = lambda n=n: bench.batch(legs(n, reject_last=True), "rolled_back")  # noqa: E731
            try:
                await measure(bench, runs[(what, n)], writes[(what, n)], action)
            finally:
                if what == "rollback":
                    await bench.faults(reject_symbols=[])
    lines = {key: line(key[0], latency, key[1], runs[key], writes[key], bench.burst)
             for key in keys}
    one_leg = lines[("one_leg", 1)]["p50_ms"]
    place = lines[("venue_place", None)]["p50_ms"]
    top = max(leg_counts)
    parallel = lines[("parallel", top)]["p50_ms"]
    check = lines[("margin_check", top)]["p50_ms"]

    def speedup(n: int, extra: float = 0.0) -> float:
        sequential = lines[("sequential", n)]["p50_ms"] + extra
        return round(sequential / lines[("parallel", n)]["p50_ms"], 2)

    speedups = {str(n): speedup(n) for n in leg_counts}
    targets: dict[str, Any] = {
        "bench": "targets", "latency_ms": latency, "legs": top, "parallel_p50_ms": parallel,
        "one_leg_p50_ms": one_leg, "limit_ms": round(2 * one_leg + 10, 1),
        "within_limit": parallel <= 2 * one_leg + 10,
        "venue_place_p50_ms": place, "limit_vs_venue_place_ms": round(2 * place + 10, 1),
        "within_limit_vs_venue_place": parallel <= 2 * place + 10,
        "speedup_over_sequential": speedups,
        # The same, with the one pre-trade check the parallel batch makes added to sequential.
        "speedup_over_sequential_with_margin_check": {str(n): speedup(n, check)
                                                      for n in leg_counts},
    }
    if latency == 50:
        targets["speedup_4x_met"] = speedups[str(top)] >= 4
        targets["speedup_4x_met_with_margin_check"] = speedup(top, check) >= 4
    print(json.dumps(targets), flush=True)


async def main_async(latencies: list[int], leg_counts: list[int], repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        async with open_venue(work, ["primary"]) as rest:
            config = work / "orderdesk.toml"
            config.write_text(GATEWAY_TOML.format(work=work, rest=rest, token=TOKEN,
                                                  ticker="ws" + rest.removeprefix("http") + "/"))
            settings = load_settings(str(config), environ={"ORDERDESK_VAR": str(work / "var")})
            async with (
                open_service(settings) as running,
                httpx.AsyncClient(base_url=f"http://{running.web_bind}", timeout=30,
                                  headers={"Authorization": f"Bearer {TOKEN}"}) as api,
                httpx.AsyncClient(base_url=rest, timeout=30, headers={
                    "X-Kite-Version": "3", "Authorization": "token paper:paper-primary"}) as venue,
            ):
                with trio.fail_after(30):
                    while True:  # the account's ticker connected: the service is ready
                        if (await api.get("/health")).json()["actors"]["connected"] == 1:
                            break
                        await trio.sleep(0.05)
                gc.freeze()  # as `orderdesk serve` does after start-up
                bench = Bench(running, api, venue)
                print(json.dumps({"bench": "setup", "rate_per_s": running.batches.config.rate_per_s,
                                  "rate_burst": bench.burst, "legs": leg_counts, "runs": repeat,
                                  "symbols": CALLS[:max(leg_counts)], "rejected": REJECTED}),
                      flush=True)
                for latency in latencies:
                    await run_latency(bench, latency, leg_counts, repeat)
                await bench.faults(latency_ms=0)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latencies", type=_ints, default=[0, 20, 50])
    parser.add_argument("--legs", type=_ints, default=[2, 4, 10])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if max(args.legs) > len(CALLS):
        parser.error(f"at most {len(CALLS)} legs")
    logging.basicConfig(level=logging.WARNING)
    trio.run(main_async, args.latencies, args.legs, args.runs)


if __name__ == "__main__":
    main()
