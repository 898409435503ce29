"""The golden record of the API: every route's success and error answers and the websocket
frames of the main scenarios, as recorded on main before issue 13's restructuring. A change that
is meant to be "behaviour unchanged" must match it byte for byte.

Each group of tests/golden_scenarios.py runs against a fresh real service (paper venue embedded,
SQLite, real sockets) and its answers are compared with tests/golden/<group>.json: status code,
the headers a client relies on (Content-Type, Location, Retry-After, Allow, WWW-Authenticate),
and the body byte for byte once volatile values are masked (ids, timestamps, durations,
simulated prices; the list is in tests/golden_masking.py). `test_every_route_is_recorded`
fails for a route of the app's url_map that no recorded case answered with a success, so a new
route fails here until it is recorded.

To record again after an intended change of behaviour (the diff of tests/golden/ is then what
review reads):

    ORDERDESK_GOLDEN=record .venv/bin/python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import trio

from supervision.service import Running
from tests.fixtures_service import open_test_service
from tests.golden_client import Recorder
from tests.golden_scenarios import GROUPS, Group, open_group_service

GOLDEN = Path(__file__).parent / "golden"
RECORD = os.environ.get("ORDERDESK_GOLDEN") == "record"
IGNORED_METHODS = frozenset({"HEAD", "OPTIONS"})


def dump(cases: dict[str, Any]) -> str:
    return json.dumps(cases, indent=2, ensure_ascii=False) + "\n"


async def record(tmp_path: Path, group: Group) -> dict[str, Any]:
    async with open_group_service(tmp_path, group) as running:
        recorder = Recorder(running)
        try:
            await group.scenario(recorder)
        finally:
            await recorder.aclose()
    return recorder.cases


@pytest.mark.parametrize("group", GROUPS, ids=lambda g: g.name)
async def test_answers_match_the_golden_record(tmp_path: Path, group: Group) -> None:
    with trio.fail_after(60):
        cases = await record(tmp_path, group)
    path = GOLDEN / f"{group.name}.json"
    if RECORD:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(dump(cases), encoding="utf-8")
    assert path.exists(), f"no {path.name}: record it (see this module's docstring)"
    golden = path.read_text(encoding="utf-8")
    actual = dump(cases)
    if actual != golden:
        diff = difflib.unified_diff(golden.splitlines(), actual.splitlines(),
                                    f"golden/{path.name}", "now", lineterm="", n=2)
        pytest.fail("the answers differ from the golden record:\n" + "\n".join(diff))


def routes(running: Running) -> set[str]:
    """Every rule of the app's url_map as "METHOD /rule" ("WS /rule" for websockets)."""
    found = set()
    for rule in running.app.url_map.iter_rules():
        if rule.websocket:
            found.add(f"WS {rule.rule}")
            continue
        found.update(f"{method} {rule.rule}" for method in rule.methods or ()
                     if method not in IGNORED_METHODS)
    return found


def recorded_successes() -> set[str]:
    answered = set()
    for path in GOLDEN.glob("*.json"):
        for case in json.loads(path.read_text(encoding="utf-8")).values():
            close = case.get("close") or {}
            ok = case.get("status", 200) < 400 and close.get("code", 1000) == 1000
            if case["route"] and ok:
                answered.add(case["route"])
    return answered


async def test_every_route_is_recorded(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_test_service(tmp_path) as running:
            missing = routes(running) - recorded_successes()
    assert not missing, f"routes with no recorded success in tests/golden/: {sorted(missing)}"
