"""Order-event append throughput and latency of the store, per engine.

    .venv/bin/python bench/store.py [--postgres URL] [--sqlite PATH] [--skip-postgres]
        [--only single,grouped,multi,update_fixed_cost]

Prints one JSON line per (engine, scenario):
- single:  one caller, one event per append, sequential (latency floor, one commit per append)
- grouped: many concurrent callers (account actors), one event each: group commit at work
- multi:   concurrent callers appending several events per call
- update_fixed_cost: one order update at a time through a real account actor (book, store,
  encode; no subscribers): CPU per update and push-to-committed latency (bench/_update_cost.py)
Postgres runs in its own throwaway database (created on the server of --postgres, dropped after),
twice: as a single node, then fenced as a [cluster] owner (every account claimed, so each commit
round also locks the owner rows FOR SHARE and checks the epochs): `"fenced"` says which.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import attrs
import trio
import trio_asyncio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # ahead of bench/: the package

from _pg import throwaway_database  # noqa: E402
from _update_cost import update_cost  # noqa: E402

from store import Store, open_store  # noqa: E402


@attrs.frozen
class Scenario:
    name: str
    callers: int
    appends_per_caller: int
    events_per_append: int
    accounts: int


SCENARIOS = [
    Scenario("single", 1, 2000, 1, 1),
    Scenario("grouped", 100, 200, 1, 10),
    Scenario("grouped", 400, 50, 1, 40),
    Scenario("multi", 50, 100, 10, 10),
]


def account_of(run_id: str, scenario: Scenario, n: int) -> str:
    return f"{run_id}-{scenario.name}-{n % scenario.accounts}"


async def run_scenario(
    store: Store, scenario: Scenario, run_id: str, fenced: bool = False
) -> dict[str, object]:
    latencies: list[float] = []
    if fenced:  # this node owns every account of the scenario: its appends check the epoch
        for n in range(scenario.accounts):
            await store.claim_account(account_of(run_id, scenario, n), "bench")  # type: ignore[attr-defined]
    rounds_before = store._committer.rounds  # type: ignore[attr-defined]

    async def caller(n: int) -> None:
        account = account_of(run_id, scenario, n)
        for i in range(scenario.appends_per_caller):
            orders = [
                {"order_id": f"{n}-{i}-{k}", "status": "OPEN", "tag": f"b{n}", "quantity": 75}
                for k in range(scenario.events_per_append)
            ]
            started = time.perf_counter()
            await store.append_events(account, orders)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for n in range(scenario.callers):
            nursery.start_soon(caller, n)
    elapsed = time.perf_counter() - started
    appends = len(latencies)
    latencies.sort()
    rounds = store._committer.rounds - rounds_before  # type: ignore[attr-defined]
    return {
        "engine": store.engine,
        "fenced": fenced,
        "scenario": scenario.name,
        "callers": scenario.callers,
        "events_per_append": scenario.events_per_append,
        "appends": appends,
        "appends_per_s": round(appends / elapsed),
        "events_per_s": round(appends * scenario.events_per_append / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
        "commits": rounds,
        "seconds": round(elapsed, 2),
    }


async def bench(url: str, only: set[str] | None) -> None:
    async with trio_asyncio.open_loop(), open_store(url) as store:
        for fenced in (False, True) if store.engine == "postgres" else (False,):
            run_id = secrets.token_hex(3)
            for scenario in SCENARIOS:
                if only is None or scenario.name in only:
                    result = await run_scenario(store, scenario, run_id, fenced)
                    print(json.dumps(result), flush=True)
            if only is None or "update_fixed_cost" in only:
                account = f"{run_id}-update"
                if fenced:  # once any account is claimed, the store fences every one
                    await store.claim_account(account, "bench")  # type: ignore[attr-defined]
                result = await update_cost(store, account)
                print(json.dumps({**result, "fenced": fenced}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--sqlite", default=None, help="database file (default: a temp dir)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--only", help="scenarios to run, comma-separated (default: all)")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.sqlite or Path(tmp) / "bench.db").resolve()
        trio.run(bench, f"sqlite:///{path}", only)

    if args.skip_postgres:
        return
    with throwaway_database(args.postgres, "orderdesk_bench") as url:
        trio.run(bench, url, only)


if __name__ == "__main__":
    main()
