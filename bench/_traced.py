"""`orderdesk ARGS...` with its garbage collector timed and, FRAMES > 0, tracemalloc on: what
bench/soak.py --trace-dir starts its servers with.

    python bench/_traced.py OUT_DIR FRAMES ARGS...

Each SIGUSR1 writes the collector's pauses so far to OUT_DIR/<n>.gc.json (per generation:
count, total and longest ms) and, with tracemalloc, a snapshot to OUT_DIR/<n>.tm (n = 0, 1,
...), in the main thread between two bytecodes (the event loop stands still meanwhile: the
latencies of a run under tracemalloc are for the diff, not to be read). `diff_tops` compares
two snapshots.
"""

from __future__ import annotations

import gc
import itertools
import json
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

MIB = 1024 * 1024


def diff_tops(early: Path, late: Path, limit: int = 12) -> list[dict[str, Any]]:
    """What grew between two snapshots, the largest first: by line, with its callers."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap*")]
    before = tracemalloc.Snapshot.load(str(early)).filter_traces(ignore)
    after = tracemalloc.Snapshot.load(str(late)).filter_traces(ignore)
    rows = []
    for stat in after.compare_to(before, "traceback")[:limit]:
        frames = [f"{_short(f.filename)}:{f.lineno}" for f in stat.traceback]
        rows.append({"grew_mib": round(stat.size_diff / MIB, 2),
                     "held_mib": round(stat.size / MIB, 2), "blocks_grew": stat.count_diff,
                     "at": frames[-1], "via": frames[:-1][-4:]})
    return rows


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/w-soak/", "/main/", "/lib/python3.11/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main() -> None:
    out, frames = Path(sys.argv[1]), int(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    if frames:
        tracemalloc.start(frames)
    numbers = itertools.count()
    pauses = {generation: [0, 0.0, 0.0] for generation in range(3)}  # count, total, max ms
    started = [0.0]

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
            return
        ms = (time.perf_counter() - started[0]) * 1000
        row = pauses[info["generation"]]
        row[0], row[1], row[2] = row[0] + 1, row[1] + ms, max(row[2], ms)

    gc.callbacks.append(timed)

    def dump(_signum: int, _frame: object) -> None:
        number = next(numbers)
        (out / f"{number}.gc.json").write_text(json.dumps(
            {"objects": len(gc.get_objects()), "pauses": pauses}))
        if frames:
            tracemalloc.take_snapshot().dump(str(out / f"{number}.tm"))

    signal.signal(signal.SIGUSR1, dump)
    sys.argv = ["orderdesk", *sys.argv[3:]]
    sys.path[0] = str(Path(__file__).resolve().parent.parent)  # not bench/ (its store.py)
    from supervision.cli import main as orderdesk

    sys.exit(orderdesk())


if __name__ == "__main__":
    main()
