"""py-spy around a soak window (bench/soak.py --trace): record one process, then its tops.

py-spy is not a dependency of orderdesk: give its path (`--py-spy`, e.g. one installed with
`pip install py-spy` into any environment). `--gil`: only samples that hold the GIL, so the
shares are of the CPU the process spends in Python, not of its idle waits.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path
from typing import Any

import trio

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


async def record(py_spy: str, pid: int, seconds: float, out: Path) -> None:
    """Sample `pid` for `seconds` (100 Hz, GIL holders only) into `out` (collapsed stacks)."""
    await trio.run_process(
        [py_spy, "record", "--gil", "--nonblocking", "--rate", "100", "--duration",
         str(int(seconds)), "--pid", str(pid), "--format", "raw", "--output", str(out)],
        capture_stdout=True, capture_stderr=True, check=False)


def tops(path: Path, limit: int = 12) -> dict[str, Any]:
    """The functions with the most samples on top of the stack (self) and anywhere in it
    (inclusive, counted once per sample), as shares of all samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    if not path.exists():
        return {"samples": 0}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        names = [_name(frame) for frame in stack.split(";")]
        own[names[-1]] += n
        for name in set(names):
            inclusive[name] += n

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(limit)]

    return {"samples": total, "self_pct": share(own), "inclusive_pct": share(inclusive)}


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/w-soak/", "/main/", "/lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{match['name']} ({file})"
