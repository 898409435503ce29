"""Market ticks, venue side: what the paper venue's ticker sends per connection, and what
decoding it costs. `python bench/ticks.py [--instruments 10 100 1000 3000] [--modes ...]
[--interval 0.01] [--seconds 3]`.

Starts the venue in-process on loopback with an instrument master of N NSE equities (a CSV it
writes), its simulation stepping every `--interval` seconds (each step moves every instrument,
so every subscribed one ticks). One connection subscribes all N in a mode and counts for
`--seconds`: ticks per second, frames per second, bytes per second. Then the frames it got are
decoded again with `brokers.kite_ticks.decode_frame`, timed: microseconds of CPU per tick. One
JSON line per (instruments, mode). The venue and the client share one process (and one core),
so the rates are a floor.

`--gateway [--accounts 100] [--held 20] [--seconds 10]`: the gateway's side instead. The venue
runs as its own process (`orderdesk venue`, its simulation stepping once a second, so every
instrument ticks once a second) and the whole service runs in this process (`open_service`,
SQLite), one paper account per id, no subscribers (the positions throttle sends nothing). Every
account holds the same `--held` NIFTY options (placed at the venue before the service starts),
so each account's ticker connection subscribes them and every instrument is held by every
account. It prints, over `--seconds`: ticks received (decoded) per second, frames per second,
decodes per tick and connection (each frame is decoded once, on the connection it came in on),
and the gateway's CPU per tick received (this process: the venue is another).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import trio
from trio_websocket import open_websocket_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from brokers.kite_ticks import MODES, Segment, decode_frame, instrument_token
from brokers.paper import VenueConfig, serve_venue
from brokers.paper.instruments import CSV_COLUMNS


def master_csv(n: int) -> str:
    rows = [",".join(CSV_COLUMNS)]
    for k in range(n):
        exchange_token = 100_000 + k
        rows.append(f"{instrument_token(exchange_token, Segment.NSE)},{exchange_token},"
                    f"EQ{k},EQUITY {k},{100 + k % 900}.0,,0.0,0.05,1,EQ,NSE,NSE")
    return "\n".join(rows) + "\n"


async def measure(n: int, mode: str, interval: float, seconds: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as directory:
        csv_path = Path(directory) / "instruments.csv"
        csv_path.write_text(master_csv(n))
        config = VenueConfig(bind="127.0.0.1:0", rate_limit_per_s=None, tick_interval_s=interval,
                             instruments_csv=str(csv_path))
        tokens = [instrument_token(100_000 + k, Segment.NSE) for k in range(n)]
        frames: list[bytes] = []
        async with trio.open_nursery() as nursery:
            address = await nursery.start(serve_venue, config)
            url = f"{address.ticker_url}?api_key=paper&access_token=paper-primary"
            async with open_websocket_url(url, max_message_size=64 << 20) as ws:
                await ws.send_message(json.dumps({"a": "subscribe", "v": tokens}))
                await ws.send_message(json.dumps({"a": "mode", "v": [mode, tokens]}))
                with trio.move_on_after(0.5):  # the snapshots, and the mode settling
                    while True:
                        await ws.get_message()
                started = time.perf_counter()
                with trio.move_on_after(seconds):
                    while True:
                        message = await ws.get_message()
                        if isinstance(message, bytes) and len(message) > 1:
                            frames.append(message)
                elapsed = time.perf_counter() - started
            nursery.cancel_scope.cancel()
    cpu_started = time.process_time()
    ticks = sum(len(decode_frame(frame)) for frame in frames)
    cpu = time.process_time() - cpu_started
    return {
        "bench": "ticks", "side": "venue", "instruments": n, "mode": mode,
        "interval_s": interval, "seconds": round(elapsed, 2),
        "ticks_per_s": round(ticks / elapsed), "frames_per_s": round(len(frames) / elapsed, 1),
        "bytes_per_s": round(sum(map(len, frames)) / elapsed),
        "decode_us_per_tick": round(cpu / ticks * 1e6, 2) if ticks else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instruments", type=int, nargs="+", default=[10, 100, 1000, 3000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--interval", type=float, default=0.01, help="simulation step, s")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--gateway", action="store_true", help="the gateway's side")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--held", type=int, default=20, help="instruments each account holds")
    args = parser.parse_args()
    if args.gateway:
        from _ticks_gateway import measure_gateway  # noqa: PLC0415 (its imports are heavy)

        print(json.dumps(trio.run(measure_gateway, args.accounts, args.held, args.seconds)),
              flush=True)
        return
    for n in args.instruments:
        for mode in args.modes:
            print(json.dumps(trio.run(measure, n, mode, args.interval, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
