"""The paper venue's placement latency, in memory and with a state file (every change fsync'd
before the answer): `python bench/venue_place.py [ORDERS] [CONCURRENCY]`.

Starts the venue in-process on loopback, places ORDERS resting LIMIT orders over REST (one
client, CONCURRENCY at a time) and prints p50 / p99 / max of the answer's latency and the
placements per second, for each mode.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

from brokers.paper import VenueConfig, serve_venue

FORM = {"variety": "regular", "exchange": "NFO", "transaction_type": "BUY", "order_type": "LIMIT",
        "quantity": 75, "product": "NRML", "price": 1, "validity": "DAY"}
HEADERS = {"X-Kite-Version": "3", "Authorization": "token paper:paper-primary"}


async def measure(state_file: str | None, orders: int, concurrency: int) -> list[float]:
    config = VenueConfig(bind="127.0.0.1:0", rate_limit_per_s=None, tick_interval_s=3600.0,
                         state_file=state_file, funds=1e12)
    latencies: list[float] = []
    async with trio.open_nursery() as nursery:
        address = await nursery.start(serve_venue, config)
        async with httpx.AsyncClient(base_url=address.rest_url, headers=HEADERS) as client:
            symbol = next(row.split(",")[2] for row in
                          (await client.get("/instruments/NFO")).text.splitlines()[1:]
                          if row.split(",")[2].endswith("FUT"))

            async def worker(count: int) -> None:
                for _ in range(count):
                    started = time.perf_counter()
                    response = await client.post("/orders/regular",
                                                 data={**FORM, "tradingsymbol": symbol})
                    latencies.append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text

            async with trio.open_nursery() as workers:
                for _ in range(concurrency):
                    workers.start_soon(worker, orders // concurrency)
        nursery.cancel_scope.cancel()
    return latencies


def report(name: str, latencies: list[float], elapsed: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"{name:<12} n={len(ms)} p50={statistics.median(ms):.2f} ms p99={p99:.2f} ms "
          f"max={ms[-1]:.2f} ms  {len(ms) / elapsed:.0f} placements/s")


def main() -> None:
    orders = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    concurrency = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    with tempfile.TemporaryDirectory() as directory:
        for name, state_file in (("memory", None), ("state file", str(Path(directory) / "v.json"))):
            started = time.perf_counter()
            latencies = trio.run(measure, state_file, orders, concurrency)
            report(name, latencies, time.perf_counter() - started)


if __name__ == "__main__":
    main()
