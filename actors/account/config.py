"""How an account actor runs: its buffers, reconnect backoff, reconcile period and health
policy; tests shrink them."""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from ..health import HealthPolicy

__all__ = ["ActorConfig"]


@attrs.frozen
class ActorConfig:
    """One account actor's timings and bounds."""

    replay_buffer: int = 10_000
    # The snapshot (and GET /orders without `before`) carries every working order and this many
    # final ones, the newest; the book holds `book_finished` final ones in full (older ones are
    # in the store only: the orders route pages them).
    snapshot_finished: int = 500
    book_finished: int = 1_000
    # Unix time: when the IST day turns over (tests give a clock that follows Trio's).
    wall_clock: Callable[[], float] = time.time
    subscriber_queue: int = 1_000
    # Kite's own clients: the first reconnect after 2-5 s, backing off to 60 s.
    reconnect_initial_s: float = 2.0
    reconnect_max_s: float = 60.0
    reconnect_jitter_s: float = 3.0
    # While an order is working, GET /orders this often: Kite never replays a lost push, and
    # a socket that stays open (heartbeats flowing) gives no other sign of one.
    reconcile_interval_s: float = 20.0
    # Reconciles after a (re)connect running at once in the process (the others queue): a
    # shared upstream coming back does not make every account list the day's orders at once.
    reconcile_slots: int = 16
    held_frames: int = 10_000
    # `positions` messages per second at most, per account (each subscriber keeps the latest).
    positions_max_rate_hz: float = 4.0
    health: HealthPolicy = HealthPolicy()  # when the account counts as degraded
