"""The health registry: what every supervised child and actor is doing right now.

One registry per process, passed down explicitly. Each child owns its `HealthEntry` and updates it
in place; readers (`/health`, `/admin/actors`, the CLI) only take snapshots. Updates sit on hot
paths, so `touch()` stores one float and derived values (ages, wall times) are computed only when
a snapshot is taken.
"""

from __future__ import annotations

import time
from typing import Any

import attrs
import trio

#: Supervision states. Actors report their own free-form state through `HealthEntry.upstream`.
STATES = ("starting", "running", "backoff", "failed", "stopped")

#: Upstream states that make the process degraded even though the actor itself is running.
DEGRADED_UPSTREAM = frozenset({"auth_expired"})


@attrs.frozen
class ErrorInfo:
    """The last failure of a child, kept as text so snapshots never hold tracebacks alive."""

    type: str
    message: str
    at: float  # trio.current_time()

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        leaves = _leaves(exc)
        if len(leaves) == 1:
            return cls(type(leaves[0]).__name__, str(leaves[0]), trio.current_time())
        message = "; ".join(f"{type(e).__name__}: {e}" for e in leaves)
        return cls(type(exc).__name__, message, trio.current_time())


def _leaves(exc: BaseException) -> list[BaseException]:
    """The innermost exceptions of a (possibly nested) exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


@attrs.define(eq=False)
class HealthEntry:
    """One child's health, mutated in place by the child (or its supervisor) that owns it."""

    name: str
    kind: str
    state: str = "starting"
    restarts: int = 0  # total restarts since registration
    window_restarts: int = 0  # failures inside the current intensity window
    last_error: ErrorInfo | None = None
    last_event_at: float = attrs.field(factory=trio.current_time)
    started_at: float | None = None  # when the child last became ready
    upstream: str | None = None
    subscribers: int = 0
    queue_depths: dict[str, int] = attrs.field(factory=dict)
    order_conflicts: int = 0
    last_conflict: str | None = None

    def touch(self) -> None:
        """Record that something happened now (cheap: one clock read)."""
        self.last_event_at = trio.current_time()

    def set_state(self, state: str) -> None:
        self.state = state
        if state == "running":
            self.started_at = trio.current_time()
        self.touch()

    def record_error(self, exc: BaseException) -> None:
        self.last_error = ErrorInfo.from_exception(exc)
        self.touch()

    @property
    def degraded(self) -> bool:
        return self.state == "failed" or (
            self.kind == "actor" and self.upstream in DEGRADED_UPSTREAM
        )

    def to_dict(self, now: float, wall_now: float) -> dict[str, Any]:
        """JSON-ready view; trio times are turned into ages and wall-clock epochs."""
        error = None
        if self.last_error is not None:
            error = {
                "type": self.last_error.type,
                "message": self.last_error.message,
                "at": wall_now - (now - self.last_error.at),
            }
        started = self.started_at
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "degraded": self.degraded,
            "restarts": self.restarts,
            "window_restarts": self.window_restarts,
            "last_error": error,
            "last_event_at": wall_now - (now - self.last_event_at),
            "last_event_age_s": round(now - self.last_event_at, 3),
            "started_at": None if started is None else wall_now - (now - started),
            "uptime_s": None if started is None else round(now - started, 3),
            "upstream": self.upstream,
            "subscribers": self.subscribers,
            "queue_depths": dict(self.queue_depths),
        }


class HealthRegistry:
    """Every entry of the process, by name, in registration order."""

    def __init__(self) -> None:
        self._entries: dict[str, HealthEntry] = {}

    def register(self, name: str, kind: str = "service") -> HealthEntry:
        """The entry for `name`, created if new.

        Idempotent so that a supervisor and the actor it runs (or a restarted child) share one
        entry: restart counts and the last error survive restarts.
        """
        entry = self._entries.get(name)
        if entry is None:
            entry = self._entries[name] = HealthEntry(name=name, kind=kind)
        return entry

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> HealthEntry | None:
        return self._entries.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def snapshot(self) -> list[dict[str, Any]]:
        now, wall_now = trio.current_time(), time.time()
        return [entry.to_dict(now, wall_now) for entry in self._entries.values()]

    def degraded(self) -> bool:
        return any(entry.degraded for entry in self._entries.values())

    def summary(self) -> dict[str, Any]:
        """Counts by state and the names that make the process degraded."""
        states: dict[str, int] = {}
        for entry in self._entries.values():
            states[entry.state] = states.get(entry.state, 0) + 1
        degraded = [entry.name for entry in self._entries.values() if entry.degraded]
        return {
            "ok": not degraded,
            "total": len(self._entries),
            "states": states,
            "degraded": degraded,
        }
