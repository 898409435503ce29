"""Whether an account's upstream is steady enough to call the account ok.

An account is degraded while its upstream is not steadily connected (`reconnect_limit`
reconnects within `reconnect_window_s`, or `frame_timeout_s` without a frame, heartbeats
included) or its reconcile keeps failing; its health entry adds the expired token, a supervisor
that gave up and a standing order conflict. Once degraded, it is ok again only after
`recovery_s` connected with none of these, so a ticker that stalls and reconnects every few
seconds never flickers back to ok between two reconnects.

The actor reports events (each costs a clock read); the reasons are worked out when someone
asks (`/health`, `/admin/actors`, `orderdesk status`), from the times recorded.
"""

from __future__ import annotations

from collections import deque
from typing import Protocol

import attrs
import trio

__all__ = ["FrameSource", "HealthPolicy", "Reason", "UpstreamWatch"]


@attrs.frozen
class HealthPolicy:
    """When an account counts as degraded, and when it is ok again; tests shrink these."""

    reconnect_limit: int = 3  # this many reconnects ...
    reconnect_window_s: float = 60.0  # ... within this window: not steadily connected
    frame_timeout_s: float = 3.0  # no frame (nor heartbeat) for this long: stalled
    recovery_s: float = 60.0  # ok again after this long connected with no reason


@attrs.frozen
class Reason:
    """Why an entry is degraded: a stable `code` for aggregates, a `message` for people."""

    code: str
    message: str


class FrameSource(Protocol):
    """A live upstream connection: when it last received a frame (trio clock; None: never)."""

    @property
    def last_frame_at(self) -> float | None: ...


class UpstreamWatch:
    """One account's upstream events, kept across actor restarts (the entry owns it)."""

    def __init__(self, policy: HealthPolicy = HealthPolicy()) -> None:
        self.policy = policy
        self._reconnects: deque[float] = deque()
        self._unsteady_until: float | None = None
        self._stream: FrameSource | None = None
        # Silence is counted across connections: a ticker that accepts, stays mute and is
        # reconnected every few seconds stays silent. A new actor gets frame_timeout_s.
        self._last_frame_at = trio.current_time()
        self._reconcile_error: str | None = None
        self._bad_at: float | None = None  # the last time a reason held

    # -- events (the actor) ------------------------------------------------------------

    def streaming(self, stream: FrameSource) -> None:
        """A connection is open: its frames are the upstream's pulse from now on."""
        self._stream = stream

    def stream_ended(self) -> None:
        """The connection is gone. A stall that ended it counts even if nobody asked."""
        self._last_frame_at = self._last_frame()
        self._stream = None
        now = trio.current_time()
        if now - self._last_frame_at >= self.policy.frame_timeout_s:
            self._bad_at = now

    def reconnecting(self) -> None:
        """About to reconnect: counts toward `reconnect_limit`, and breaks a recovery."""
        now = trio.current_time()
        window = self.policy.reconnect_window_s
        self._reconnects.append(now)
        while self._reconnects[0] <= now - window:
            self._reconnects.popleft()
        if len(self._reconnects) >= self.policy.reconnect_limit:
            first = self._reconnects[-self.policy.reconnect_limit]
            self._unsteady_until = first + window
        if self._recovering(now) or len(self._reconnects) >= self.policy.reconnect_limit:
            self._bad_at = now

    def fault(self) -> None:
        """A reason held just now (an expired token, a conflict cleared): recovery starts over."""
        self._bad_at = trio.current_time()

    def reconcile_failed(self, message: str) -> None:
        self._reconcile_error = message
        self._bad_at = trio.current_time()

    def reconcile_ok(self) -> None:
        self._reconcile_error = None

    # -- judging (readers) -------------------------------------------------------------

    def judge(self, now: float, reasons: list[Reason], *, frames: bool = True) -> list[Reason]:
        """`reasons` (the entry's own) plus the upstream's, or `recovering` while a past
        reason is less than `recovery_s` old; empty when the account is ok. `frames=False`
        leaves the silence out (an actor parked on an expired token has no connection)."""
        found = [*reasons, *self._upstream_reasons(now, frames)]
        if found:
            self._bad_at = now
            return found
        if self._recovering(now):
            assert self._bad_at is not None
            left = self._bad_at + self.policy.recovery_s - now
            return [Reason(
                "recovering",
                f"recovering: ok after {self.policy.recovery_s:g} s connected with no fault "
                f"({left:.0f} s to go)",
            )]
        self._bad_at = None
        return []

    def _recovering(self, now: float) -> bool:
        return self._bad_at is not None and now - self._bad_at < self.policy.recovery_s

    def _upstream_reasons(self, now: float, frames: bool) -> list[Reason]:
        found: list[Reason] = []
        until = self._unsteady_until
        if until is not None:
            if now < until:
                found.append(Reason(
                    "unsteady",
                    f"upstream reconnected {self._recent(now)} times in the last "
                    f"{self.policy.reconnect_window_s:g} s",
                ))
            else:  # it ended while nobody asked: the recovery counts from its end
                self._bad_at = max(self._bad_at or until, until)
                self._unsteady_until = None
        silent = now - self._last_frame()
        if frames and silent >= self.policy.frame_timeout_s:
            found.append(Reason("stalled", f"no frame from the upstream for {silent:.1f} s"))
        if self._reconcile_error is not None:
            found.append(Reason("reconcile_failing", f"reconcile failing: {self._reconcile_error}"))
        return found

    def _last_frame(self) -> float:
        frame = self._stream.last_frame_at if self._stream is not None else None
        return self._last_frame_at if frame is None else frame

    def _recent(self, now: float) -> int:
        return sum(1 for at in self._reconnects if at > now - self.policy.reconnect_window_s)
