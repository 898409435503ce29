"""Positions and live P&L, gateway side: CPU per market tick and `positions` message latency.
`python bench/positions.py [--configs 1x10@4 10x10@4 10x100@2 1x1000@1] [--seconds 5]
[--rate 4]`.

A configuration `NxM@K` is N accounts, each holding M instruments (one filled MARKET order
each), while the venue's simulation moves every instrument K times a second: each account's
ticker connection gets M x K ticks a second. In one process (venue, actors on SQLite, one
in-process `positions` subscriber per account, as the websocket would have): the time spent in
the gateway's tick path (`KiteOrderStream._ticks`: decode, prices into the book) and in building
the `positions` messages, per tick; the process's whole CPU (venue included) for scale; and the
latency of a price: every 0.2 s one instrument is given a fresh price by `POST /_venue/ltp`,
timed until a positions message shows it or a later one (p50/p99; the throttle, `--rate` a
second, is in it: a change waits for the next slot). One JSON line per configuration.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actors.account import LATEST, AccountActor, ActorConfig  # noqa: E402
from actors.account.live_positions import LivePositions  # noqa: E402
from bench.ticks import master_csv  # noqa: E402
from brokers.base import OrderRequest  # noqa: E402
from brokers.kite import KiteBroker, KiteOrderStream, KiteSettings  # noqa: E402
from brokers.kite_ticks import Segment, instrument_token  # noqa: E402
from brokers.paper import VenueConfig, serve_venue  # noqa: E402
from store import open_store  # noqa: E402


class Meter:
    """Time spent in the gateway's tick path and positions messages (wrapped in place)."""

    def __init__(self) -> None:
        self.tick_s = self.message_s = 0.0
        self.ticks = self.messages = 0

    def install(self) -> None:
        ticks, message = KiteOrderStream._ticks, LivePositions.message
        meter = self

        def timed_ticks(stream: KiteOrderStream, frame: bytes) -> None:
            started = time.perf_counter()
            ticks(stream, frame)
            meter.tick_s += time.perf_counter() - started
            if len(frame) > 1:
                meter.ticks += int.from_bytes(frame[:2], "big")

        def timed_message(live: LivePositions) -> str:
            started = time.perf_counter()
            text = message(live)
            meter.message_s += time.perf_counter() - started
            meter.messages += 1
            return text

        KiteOrderStream._ticks = timed_ticks  # type: ignore[method-assign]
        LivePositions.message = timed_message  # type: ignore[method-assign]

    def reset(self) -> None:
        self.tick_s = self.message_s = 0.0
        self.ticks = self.messages = 0


async def watch(actor: AccountActor, probe: int, seen: list[tuple[float, float]]) -> None:
    """The account's positions messages: when each shows the probe instrument's price."""
    sub = actor.subscribe(positions=True)
    async for text in sub.receive:
        if text == LATEST:
            text = sub.take_latest() or "{}"
        message = json.loads(text)
        for p in message.get("positions", ()):
            if p["instrument_token"] == probe and p["ltp"] is not None:
                seen.append((time.perf_counter(), p["ltp"]))


async def measure(accounts: int, instruments: int, steps_hz: float, seconds: float,
                  rate: float, meter: Meter) -> dict[str, Any]:
    names = tuple(f"a{n}" for n in range(accounts))
    tokens = [instrument_token(100_000 + k, Segment.NSE) for k in range(instruments)]
    with tempfile.TemporaryDirectory() as directory:
        csv_path = Path(directory) / "instruments.csv"
        csv_path.write_text(master_csv(instruments))
        venue_config = VenueConfig(bind="127.0.0.1:0", rate_limit_per_s=None, accounts=names,
                                   tick_interval_s=3600, instruments_csv=str(csv_path))
        config = ActorConfig(positions_max_rate_hz=rate, subscriber_queue=100_000)
        async with trio.open_nursery() as nursery, open_store(
                f"sqlite:///{directory}/bench.db") as store:
            venue = await nursery.start(serve_venue, venue_config)
            actors = []
            for name in names:
                broker = KiteBroker(KiteSettings("paper", f"paper-{name}", venue.rest_url,
                                                 venue.ticker_url, timeout_s=30))
                actor = AccountActor(name, broker, store, config)
                await nursery.start(actor.run)
                actors.append(actor)
                for k in range(instruments):
                    await broker.place(OrderRequest(f"EQ{k}", "NSE", "BUY", "MARKET", 1, "MIS",
                                                    market_protection=-1))
            for actor in actors:  # every position held and its instrument subscribed
                while len(actor.live.subscribed) < instruments:  # noqa: ASYNC110 (no event)
                    await trio.sleep(0.05)
            seen: list[list[tuple[float, float]]] = [[] for _ in actors]
            for actor, got in zip(actors, seen, strict=True):
                nursery.start_soon(watch, actor, tokens[0], got)
            async with httpx.AsyncClient(base_url=venue.rest_url, timeout=30) as control:
                nursery.start_soon(_step, control, steps_hz)
                await trio.sleep(0.5)
                meter.reset()
                cpu, wall = time.process_time(), time.perf_counter()
                sent: dict[float, float] = {}
                price = 5_000.0
                while time.perf_counter() - wall < seconds:
                    price = round(price + 0.05, 2)
                    sent[price] = time.perf_counter()
                    await control.post("/_venue/ltp", json={"NSE:EQ0": price})
                    await trio.sleep(0.2)
                await trio.sleep(1.0)  # the last probes' messages
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            nursery.cancel_scope.cancel()
    latencies = sorted(x for got in seen for p, t in sent.items()
                       if (x := _latency_ms(got, p, t)) is not None)
    probes = len(sent) * accounts
    return {
        "bench": "positions", "accounts": accounts, "instruments": instruments,
        "steps_per_s": steps_hz, "max_rate_hz": rate, "seconds": round(wall, 2),
        "ticks_per_s": round(meter.ticks / wall),
        "gateway_us_per_tick": round((meter.tick_s + meter.message_s) / meter.ticks * 1e6, 2)
        if meter.ticks else None,
        "tick_path_us_per_tick": round(meter.tick_s / meter.ticks * 1e6, 2)
        if meter.ticks else None,
        "positions_messages_per_s": round(meter.messages / wall, 1),
        "message_build_us": round(meter.message_s / meter.messages * 1e6, 1)
        if meter.messages else None,
        "process_cpu_pct": round(cpu / wall * 100, 1),
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "latency_ms_p99": round(latencies[int(0.99 * (len(latencies) - 1))], 1)
        if latencies else None,
        "probes_seen": f"{len(latencies)}/{probes}",
    }


def _latency_ms(seen: list[tuple[float, float]], price: float, sent: float) -> float | None:
    """From the probe's `POST /_venue/ltp` to the first message showing a price set since: the
    probe's own, or one the simulation stepped to after it."""
    before = {ltp for at, ltp in seen if at < sent}
    return next(((at - sent) * 1e3 for at, ltp in seen
                 if at >= sent and (ltp == price or ltp not in before)), None)


async def _step(control: httpx.AsyncClient, steps_hz: float) -> None:
    """The simulation, stepped from here at K a second (each step moves every instrument)."""
    interval = 1.0 / steps_hz
    deadline = trio.current_time()
    while True:
        await control.post("/_venue/step", json={"steps": 1})
        deadline += interval
        await trio.sleep_until(deadline)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["1x10@4", "10x10@4", "10x100@2",
                                                         "1x1000@1"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=4.0, help="[positions] max_rate_hz")
    args = parser.parse_args()
    meter = Meter()
    meter.install()
    for spec in args.configs:
        shape, _, hz = spec.partition("@")
        n, m = (int(x) for x in shape.split("x"))
        result = trio.run(measure, n, m, float(hz or 1), args.seconds, args.rate, meter)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
