"""Throughput, latency and safety of batches under load, probed from outside, per engine.

    .venv/bin/python bench/load.py [--engine sqlite|postgres] [--accounts 50] [--rate 20]
        [--seconds 15] [--find-sustainable [--steps 10,20,40,60,80,120] [--p99-bound-ms 2500]]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--seed 1] [--keep-logs DIR]

Starts the paper venue (`orderdesk venue`, its own process; every Kite REST answer held back
20 ms with `POST /_venue/faults {"latency_ms": 20}`; no venue order-rate limit, funds without
end) and `orderdesk serve` (its own process) with `--accounts` paper accounts on SQLite or on a
throwaway Postgres database (created on the `--postgres` server, dropped at the end). One
websocket subscriber per account. Then each run drives a fixed, seeded schedule at `--rate`
batches a second (over all accounts, round-robin) for `--seconds`: mixed 2- and 4-leg NIFTY and
BANKNIFTY baskets, 30 % made to roll back (bench/_load_mix.py), each with an Idempotency-Key;
waits for every answer (a batch whose request got no answer is asked again once with its key:
the stored outcome), and reconciles the venue's positions and orders with the answers and checks
the subscribers (bench/_load_check.py).

One JSON line per run: `engine`, `accounts`, `offered_per_s`, `held_per_s` (batches answered
200 per second from the first send to the last answer), `p50_ms`/`p99_ms` (from each batch's
scheduled send to its answer, so a bench that falls behind counts against the server),
`statuses` (batch status, or `http_<code>:<error>`), `refused` (503 `overloaded`, by
`refused_reasons`), `mismatches` (with kinds and examples), `unknown_exposure` (legs a
`rollback_failed` answer named with an unknown quantity: the venue may hold up to
`quantity_at_most` of each, which is then no mismatch), `gaps` (seq gaps seen by the
subscribers), `subscribers_closed`, `subscribers_behind`. Runs on one stack add up: every check
covers everything placed since the stack started.

`--find-sustainable` steps the rate up through `--steps` until a run's p99 exceeds
`--p99-bound-ms`, a batch is refused, or less than 80 % of the offered rate is held (the last
answers' own latency counts in `held_per_s`, so a short run holds a little less than offered
even when it keeps up); prints a `sustainable` line with the last rate that passed, then runs
at twice that rate.

Everything is loopback, bounded in count (rate x seconds batches a run) and time, and stops by
itself. The machine is small and shared: the venue, orderdesk and this client share its cores,
so figures vary from run to run.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _fanout_stack import (  # noqa: E402
    ADMIN_TOKEN,
    Target,
    open_orderdesk,
    open_venue,
    token_for,
)
from _load_check import Answer, Subscriber, reconcile, venue_state  # noqa: E402
from _load_mix import Planned, Universe, schedule, universe_from_csv  # noqa: E402
from _pg import throwaway_database  # noqa: E402

VENUE_LATENCY_MS = 20
DRAIN_S = 90.0  # after the last send, answers get this long
CATCH_UP_S = 15.0  # subscribers get this long to reach the account's last seq


@attrs.define
class Stack:
    accounts: list[str]
    venue_rest: str
    server: Target
    api: httpx.AsyncClient
    universe: Universe
    subscribers: list[Subscriber]
    answers: list[Answer] = attrs.Factory(list)  # every run's, for the checks


@asynccontextmanager
async def open_stack(
    work: Path, accounts: list[str], database_url: str | None
) -> AsyncIterator[Stack]:
    async with (
        open_venue(work, accounts) as venue_rest,
        open_orderdesk(work, venue_rest, accounts, database_url) as server,
        httpx.AsyncClient(base_url=server.http_url or "", timeout=60,
                          limits=httpx.Limits(max_connections=1000)) as api,
        trio.open_nursery() as nursery,
    ):
        async with httpx.AsyncClient(base_url=venue_rest, timeout=30) as control:
            universe = universe_from_csv((await control.get("/instruments/NFO")).text)
            response = await control.post("/_venue/faults", json={
                "latency_ms": VENUE_LATENCY_MS, "reject_symbols": universe.rejected})
            response.raise_for_status()
        subscribers = [Subscriber(account) for account in accounts]
        for sub in subscribers:
            await nursery.start(sub.run, server.subscriber(sub.account).url,
                                token_for(sub.account))
        yield Stack(accounts, venue_rest, server, api, universe, subscribers)
        nursery.cancel_scope.cancel()


async def _send(api: httpx.AsyncClient, planned: Planned, answer: Answer, due: float) -> None:
    headers = {"Authorization": f"Bearer {token_for(planned.account)}",
               "Idempotency-Key": planned.key}
    try:
        response = await api.post(f"/accounts/{planned.account}/batch-orders",
                                  json=planned.body, headers=headers)
    except httpx.HTTPError:
        answer.http = None
        return
    finally:
        answer.latency_s = trio.current_time() - due
    answer.http = response.status_code
    try:
        answer.body = response.json()
    except ValueError:
        answer.body = {"error": "not_json"}


async def drive(stack: Stack, plan: list[Planned]) -> tuple[list[Answer], float]:
    """Send `plan` on schedule; every answer, and the seconds from first send to last answer."""
    answers = [Answer(p.account, p.legs) for p in plan]
    start = trio.current_time() + 0.1
    with trio.move_on_after(plan[-1].at_s + DRAIN_S):
        async with trio.open_nursery() as nursery:
            for planned, answer in zip(plan, answers, strict=True):
                due = start + planned.at_s
                await trio.sleep_until(due)
                nursery.start_soon(_send, stack.api, planned, answer, due)
    elapsed = trio.current_time() - start
    for planned, answer in zip(plan, answers, strict=True):
        if answer.http is None:  # no answer: the stored outcome, by its key (never twice)
            await _send(stack.api, planned, answer, trio.current_time())
    return answers, elapsed


async def catch_up(stack: Stack) -> int:
    """Wait until each subscriber saw its account's last seq; how many did not in time."""
    response = await stack.api.get("/ws/status",
                                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    last = {row["account"]: row["seq"] for row in response.json()["accounts"]}
    with trio.move_on_after(CATCH_UP_S):
        for sub in stack.subscribers:
            await sub.reach(last[sub.account])
    return sum(1 for s in stack.subscribers if (s.last_seq or 0) < last[s.account])


def _ms(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


async def run_once(stack: Stack, engine: str, rate: float, seconds: float, seed: int
                   ) -> dict[str, Any]:
    run = secrets.token_hex(3)
    plan = schedule(stack.universe, stack.accounts, rate, seconds, seed=seed, run=run)
    answers, elapsed = await drive(stack, plan)
    stack.answers += answers
    behind = await catch_up(stack)
    positions, orders = await venue_state(stack.venue_rest, stack.accounts)
    checks = reconcile(stack.answers, positions, orders)
    held = sum(1 for a in answers if a.http == 200)
    latencies = [a.latency_s for a in answers if a.http == 200]
    refused = [a for a in answers if a.refused]
    line = {
        "bench": "load", "engine": engine, "accounts": len(stack.accounts),
        "offered_per_s": rate, "seconds": seconds, "batches": len(plan),
        "held_per_s": round(held / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else 0.0,
        "p99_ms": _ms(latencies, 0.99), "max_ms": _ms(latencies, 1.0),
        "statuses": dict(Counter(a.outcome for a in answers)),
        "kinds": dict(Counter(p.kind for p in plan)),
        "refused": len(refused),
        "refused_reasons": dict(Counter(str(a.body.get("reason")) for a in refused)),
        **checks,
        "gaps": sum(s.gaps for s in stack.subscribers),
        "subscribers_closed": sum(1 for s in stack.subscribers if s.closed),
        "subscribers_behind": behind,
        "venue_orders": sum(len(rows) for rows in orders.values()),
    }
    print(json.dumps(line), flush=True)
    return line


def passes(line: dict[str, Any], p99_bound_ms: float) -> bool:
    return (line["p99_ms"] <= p99_bound_ms and line["refused"] == 0
            and line["held_per_s"] >= 0.8 * line["offered_per_s"])


async def main_async(args: argparse.Namespace, database_url: str | None) -> None:
    engine = "postgres" if database_url else "sqlite"
    accounts = [f"acct{n:03d}" for n in range(args.accounts)]
    with tempfile.TemporaryDirectory() as tmp:
        async with open_stack(Path(args.keep_logs or tmp), accounts, database_url) as stack:
            if not args.find_sustainable:
                await run_once(stack, engine, args.rate, args.seconds, args.seed)
                return
            sustainable = 0.0
            for rate in args.steps:
                line = await run_once(stack, engine, rate, args.seconds, args.seed + int(rate))
                if not passes(line, args.p99_bound_ms):
                    break
                sustainable = rate
            print(json.dumps({"bench": "sustainable", "engine": engine,
                              "accounts": len(accounts), "rate_per_s": sustainable,
                              "p99_bound_ms": args.p99_bound_ms}), flush=True)
            if sustainable:
                await run_once(stack, engine, 2 * sustainable, args.seconds, args.seed + 1)


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0, help="batches/s over all accounts")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--find-sustainable", action="store_true")
    parser.add_argument("--steps", type=_floats, default=[10, 20, 40, 60, 80, 120])
    parser.add_argument("--p99-bound-ms", type=float, default=2500.0)
    parser.add_argument("--keep-logs", metavar="DIR",
                        help="write the processes' configs and logs here (default: a temp dir)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="the server where the throwaway database is made")
    args = parser.parse_args()
    if not 1 <= args.accounts <= 500 or not 0 < args.rate <= 1000 or not 0 < args.seconds <= 60:
        parser.error("--accounts 1..500, --rate 0..1000, --seconds 0..60")
    if args.keep_logs:
        Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING)
    started = time.monotonic()
    if args.engine == "sqlite":
        trio.run(main_async, args, None)
    else:
        with throwaway_database(args.postgres, "orderdesk_load") as url:
            trio.run(main_async, args, url)
    print(json.dumps({"bench": "done", "seconds": round(time.monotonic() - started, 1)}),
          flush=True)


if __name__ == "__main__":
    main()
