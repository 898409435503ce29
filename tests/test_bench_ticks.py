"""bench/ticks.py, briefly: it runs and its lines carry ticks at the venue's pace."""

from __future__ import annotations

import json
import sys

import trio

from tests.fixtures_cli import REPO, cli_env


async def test_bench_ticks_reports_each_mode(tmp_path):
    with trio.fail_after(60):
        process = await trio.run_process(
            [sys.executable, str(REPO / "bench" / "ticks.py"), "--instruments", "5",
             "--interval", "0.05", "--seconds", "0.5"],
            capture_stdout=True, capture_stderr=True, check=False, cwd=tmp_path,
            env=cli_env(tmp_path),
        )
    assert process.returncode == 0, process.stderr.decode()[-3000:]
    lines = [json.loads(text) for text in process.stdout.decode().splitlines()]
    assert [line["mode"] for line in lines] == ["ltp", "quote", "full"]
    for line in lines:
        assert line["bench"] == "ticks" and line["instruments"] == 5
        assert line["ticks_per_s"] > 0 and line["decode_us_per_tick"] > 0
