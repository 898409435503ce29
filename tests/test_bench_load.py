"""bench/load.py's scenario, briefly, on both engines: the venue agrees with every answer.

The bench runs as a user would (its own process, which starts `orderdesk venue` and
`orderdesk serve` as processes of their own): 3 accounts, 10 seeded batches over 2 s, a third
of them made to roll back. Its one `load` line must show no mismatch between the answers and
the venue's positions and orders, no seq gap, and each batch's outcome being the one its kind
calls for (a plain basket succeeds, a rejected or timed-out one rolls back).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import trio

from tests.fixtures_cli import REPO, cli_env


async def _bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    with trio.fail_after(60):
        process = await trio.run_process(
            [sys.executable, str(REPO / "bench" / "load.py"), "--accounts", "3", "--rate", "5",
             "--seconds", "2", *args],
            capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path,
            env=cli_env(tmp_path),
        )
    assert process.returncode == 0, process.stderr.decode()[-3000:]
    lines = [json.loads(text) for text in process.stdout.decode().splitlines()]
    (line,) = [item for item in lines if item["bench"] == "load"]
    return line


def _check(line: dict[str, Any]) -> None:
    assert line["batches"] == 10
    assert line["mismatches"] == 0, line["mismatch_examples"]
    assert line["gaps"] == 0 and line["subscribers_closed"] == 0
    assert line["subscribers_behind"] == 0
    kinds = Counter(line["kinds"])
    assert kinds["reject"] + kinds["timeout"] > 0 and kinds["plain"] > 0, kinds
    assert line["statuses"] == {
        "success": kinds["plain"], "rolled_back": kinds["reject"] + kinds["timeout"]}
    assert line["refused"] == 0 and line["unknown_exposure"] == 0
    assert line["venue_orders"] > 0


async def test_load_bench_on_sqlite(tmp_path: Path) -> None:
    _check(await _bench(tmp_path, "--engine", "sqlite"))


async def test_load_bench_on_postgres(tmp_path: Path, pg_database: str) -> None:
    _check(await _bench(tmp_path, "--engine", "postgres", "--postgres", pg_database))
