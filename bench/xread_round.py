"""CPU of one stream-reader round: XREAD through coredis vs the reader's own connection.

    .venv/bin/python bench/xread_round.py [--streams 20] [--rounds 1000] [--repeat 2]
        [--redis redis://127.0.0.1:6379/0]

--streams streams (keys of a prefix of its own, deleted at the end) each get --rounds entries
holding an order frame; then --rounds XREADs over all of them, each returning the next entry of
the first stream (as the reader's rounds do when updates come one at a time), first through
coredis, then through `supervision/xread_connection.py`. One JSON line per repeat: process CPU
µs per round of each.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path

import coredis
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervision.xread_connection import XReadConnection  # noqa: E402

FRAME = json.dumps({"type": "order", "account": "acct001", "seq": 1, "order": {
    "order_id": "250101000000001", "status": "COMPLETE", "tradingsymbol": "NIFTY26DECFUT",
    "quantity": 75, "filled_quantity": 75, "average_price": 24100.5, "tag": None,
    "order_timestamp": "2026-12-01 09:15:00"}})


async def run(args: argparse.Namespace) -> None:
    prefix = f"benchxr{secrets.token_hex(4)}"
    keys = [f"{{{prefix}:acct:{i}}}:updates" for i in range(args.streams)]
    n = args.rounds
    async with coredis.Redis.from_url(args.redis, decode_responses=True) as redis:
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    for seq in range(1, n + 1):
                        pipe.xadd(key, {"m": FRAME}, identifier=f"{seq}-0")

            def positions(seq: int) -> dict[str, str]:
                return {keys[0]: f"{seq}-0", **{k: f"{n}-0" for k in keys[1:]}}

            for _ in range(args.repeat):
                started = time.process_time()
                for seq in range(n - 1):
                    await redis.xread(positions(seq), count=1, block=1000)
                via_coredis = (time.process_time() - started) / (n - 1)
                own = XReadConnection(args.redis)
                started = time.process_time()
                for seq in range(n - 1):
                    await own.xread(positions(seq), 1, 1000)
                via_own = (time.process_time() - started) / (n - 1)
                await own.aclose()
                print(json.dumps({"streams": args.streams, "rounds": n - 1,
                                  "coredis_cpu_us_per_round": round(via_coredis * 1e6, 1),
                                  "own_connection_cpu_us_per_round": round(via_own * 1e6, 1)}),
                      flush=True)
        finally:
            await redis.delete(keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    trio.run(run, parser.parse_args())


if __name__ == "__main__":
    main()
