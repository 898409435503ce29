"""The health registry: what every supervised child and actor is doing right now.

One registry per process, passed down explicitly. Each child owns its `HealthEntry` and updates it
in place; readers (`/health`, `/admin/actors`, the CLI) only take snapshots. Updates sit on hot
paths, so `touch()` stores one float and derived values (ages, wall times) are computed only when
a snapshot is taken.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import attrs
import trio

from ..changes import Changes
from .upstream_watch import Reason, UpstreamWatch

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


def _notify(entry: HealthEntry, _attribute: Any, value: Any) -> Any:
    entry.changes.notify()
    return value


@attrs.define(eq=False, on_setattr=_notify)
class HealthEntry:
    """One child's health, mutated in place by the child (or its supervisor) that owns it;
    every field set wakes `changes` (tests and drills wait on it)."""

    name: str
    kind: str
    state: str = "starting"
    restarts: int = 0  # total restarts since registration
    window_restarts: int = 0  # failures inside the current intensity window
    last_error: ErrorInfo | None = None
    last_event_at: float = attrs.field(factory=trio.current_time)
    started_at: float | None = None  # when the child last became ready
    upstream: str | None = None
    upstream_watch: UpstreamWatch | None = None  # an account actor's; judges its steadiness
    subscribers: int = 0
    queue_depths: dict[str, int] = attrs.field(factory=dict)
    order_conflicts: int = 0
    last_conflict: str | None = None
    changes: Changes = attrs.field(factory=Changes, init=False, repr=False,
                                   on_setattr=attrs.setters.NO_OP)

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

    def clear_conflicts(self) -> None:
        """The operator restarted the account: its conflicts no longer stand."""
        if self.order_conflicts and self.upstream_watch is not None:
            self.upstream_watch.fault()  # the recovery counts from now
        self.order_conflicts = 0
        self.last_conflict = None

    def reasons(self, now: float | None = None) -> list[Reason]:
        """Why this entry is degraded right now; empty when it is ok."""
        now = trio.current_time() if now is None else now
        found: list[Reason] = []
        if self.state == "failed":
            error = self.last_error
            why = f"{error.type}: {error.message}" if error is not None else "gave up"
            found.append(Reason("failed", f"failed: {why}"))
        if self.kind != "actor":
            return found
        parked = self.upstream in DEGRADED_UPSTREAM
        if parked:
            found.append(Reason(
                "auth_expired", "the broker refused the access token: load a new one"
            ))
        if self.order_conflicts:
            found.append(Reason(
                "order_conflict",
                self.last_conflict or f"{self.order_conflicts} order conflicts stand",
            ))
        if self.upstream_watch is None:
            return found
        return self.upstream_watch.judge(now, found, frames=not parked)

    @property
    def degraded(self) -> bool:
        return bool(self.reasons())

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
        reasons = self.reasons(now)
        return {
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "degraded": bool(reasons),
            "reasons": [attrs.asdict(reason) for reason in reasons],
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
    """Every entry of the process, by name, in registration order, and whether it drains."""

    def __init__(self) -> None:
        self._entries: dict[str, HealthEntry] = {}
        self._draining = False

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

    def reasons(self) -> dict[str, list[Reason]]:
        """The degraded entries, by name, with why."""
        now = trio.current_time()
        found = {name: entry.reasons(now) for name, entry in self._entries.items()}
        return {name: reasons for name, reasons in found.items() if reasons}

    def degraded(self) -> bool:
        return bool(self.reasons())

    def summary(self) -> dict[str, Any]:
        """Counts by state and the names that make the process degraded."""
        states: dict[str, int] = {}
        for entry in self._entries.values():
            states[entry.state] = states.get(entry.state, 0) + 1
        degraded = list(self.reasons())
        return {
            "ok": not degraded,
            "total": len(self._entries),
            "states": states,
            "degraded": degraded,
        }

    # -- readiness: may a load balancer send traffic here? -----------------------------

    def begin_draining(self) -> None:
        """Shutdown began: not ready from now on, whatever else holds."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    def unready(self, actors: Iterable[str]) -> list[str]:
        """Why the process must not take traffic (empty: ready), naming no account.

        Ready once the store is open and every actor in `actors` has started, in any state;
        afterwards unready only while the store is down or the process drains. An account's
        own health never counts: one expired token must not take every node out.
        """
        found: list[str] = []
        store = self._entries.get("store")
        if store is None or store.state == "starting":
            found.append("the store is not open yet")
        elif store.state != "running":
            found.append("the store is down")
        waiting = sum(1 for name in actors if not _has_started(self._entries.get(name)))
        if waiting:
            found.append(f"{waiting} account actors have not started yet")
        if self._draining:
            found.append("shutting down")
        return found


def _has_started(entry: HealthEntry | None) -> bool:
    """Ready once (even if it is down now), or past its first start attempt."""
    return entry is not None and (entry.started_at is not None or entry.state != "starting")
