"""The health registry: entries owned by children, JSON-ready snapshots, the degraded flag."""

from __future__ import annotations

import json
import time

import attrs
import pytest
import trio

from supervision import HealthRegistry

SNAPSHOT_KEYS = {
    "name", "kind", "state", "degraded", "reasons", "restarts", "window_restarts", "last_error",
    "last_event_at", "last_event_age_s", "started_at", "uptime_s", "upstream", "subscribers",
    "queue_depths",
}  # fmt: skip


async def test_register_is_idempotent_and_unregister_forgets() -> None:
    health = HealthRegistry()
    entry = health.register("primary", "actor")
    assert health.register("primary", "actor") is entry
    assert health.get("primary") is entry and len(health) == 1
    health.unregister("primary")
    health.unregister("primary")  # no error twice
    assert "primary" not in health and health.snapshot() == []


async def test_snapshot_fields(autojump_clock: trio.abc.Clock) -> None:
    health = HealthRegistry()
    entry = health.register("primary", "actor")
    entry.set_state("running")
    entry.upstream = "connected"
    entry.subscribers = 2
    entry.queue_depths["sub-1"] = 3
    entry.record_error(ValueError("socket closed"))
    await trio.sleep(3)
    (row,) = health.snapshot()
    assert set(row) == SNAPSHOT_KEYS
    assert row["name"] == "primary" and row["kind"] == "actor" and row["state"] == "running"
    assert row["last_event_age_s"] == pytest.approx(3)
    assert row["uptime_s"] == pytest.approx(3)
    assert row["last_event_at"] == pytest.approx(time.time() - 3, abs=1)
    assert row["last_error"]["type"] == "ValueError"
    assert row["last_error"]["message"] == "socket closed"
    assert row["upstream"] == "connected" and row["subscribers"] == 2
    assert row["queue_depths"] == {"sub-1": 3}
    row["queue_depths"]["sub-1"] = 99  # a snapshot is a copy
    assert entry.queue_depths == {"sub-1": 3}
    json.dumps(health.snapshot())


async def test_touch_moves_the_last_event(autojump_clock: trio.abc.Clock) -> None:
    health = HealthRegistry()
    entry = health.register("primary", "actor")
    await trio.sleep(5)
    assert health.snapshot()[0]["last_event_age_s"] == pytest.approx(5)
    entry.touch()
    assert health.snapshot()[0]["last_event_age_s"] == 0


async def test_record_error_names_the_only_leaf_of_a_group() -> None:
    entry = HealthRegistry().register("x")
    entry.record_error(ExceptionGroup("nursery", [KeyError("k")]))
    assert entry.last_error is not None and entry.last_error.type == "KeyError"
    entry.record_error(ExceptionGroup("nursery", [KeyError("k"), ValueError("v")]))
    assert entry.last_error.type == "ExceptionGroup"
    assert entry.last_error.message == "KeyError: 'k'; ValueError: v"


@attrs.frozen
class DegradedCase:
    kind: str
    state: str
    upstream: str | None
    degraded: bool


DEGRADED_CASES = [
    DegradedCase("service", "running", None, False),
    DegradedCase("service", "backoff", None, False),
    DegradedCase("service", "failed", None, True),
    DegradedCase("actor", "failed", None, True),
    DegradedCase("actor", "running", "reconnecting", False),
    DegradedCase("actor", "running", "auth_expired", True),
    DegradedCase("service", "running", "auth_expired", False),
    DegradedCase("actor", "stopped", None, False),
]


@pytest.mark.parametrize("case", DEGRADED_CASES)
async def test_degraded(case: DegradedCase) -> None:
    health = HealthRegistry()
    health.register("fine", "service").set_state("running")
    entry = health.register("x", case.kind)
    entry.set_state(case.state)
    entry.upstream = case.upstream
    assert health.degraded() is case.degraded
    summary = health.summary()
    assert summary["ok"] is not case.degraded
    assert summary["degraded"] == (["x"] if case.degraded else [])


async def test_summary_counts_by_state() -> None:
    health = HealthRegistry()
    for name, state in [("a", "running"), ("b", "running"), ("c", "backoff"), ("d", "failed")]:
        health.register(name).set_state(state)
    assert health.summary() == {
        "ok": False,
        "total": 4,
        "states": {"running": 2, "backoff": 1, "failed": 1},
        "degraded": ["d"],
    }
    assert HealthRegistry().summary() == {"ok": True, "total": 0, "states": {}, "degraded": []}
