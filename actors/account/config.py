"""How an account actor runs: its buffers, reconnect backoff, reconcile period and health
policy; tests shrink them."""

from __future__ import annotations

import attrs

from ..health import HealthPolicy

__all__ = ["ActorConfig"]


@attrs.frozen
class ActorConfig:
    """One account actor's timings and bounds."""

    replay_buffer: int = 10_000
    subscriber_queue: int = 1_000
    # Kite's own clients: the first reconnect after 2-5 s, backing off to 60 s.
    reconnect_initial_s: float = 2.0
    reconnect_max_s: float = 60.0
    reconnect_jitter_s: float = 3.0
    # While an order is working, GET /orders this often: Kite never replays a lost push, and
    # a socket that stays open (heartbeats flowing) gives no other sign of one.
    reconcile_interval_s: float = 20.0
    held_frames: int = 10_000
    # `positions` messages per second at most, per account (each subscriber keeps the latest).
    positions_max_rate_hz: float = 4.0
    health: HealthPolicy = HealthPolicy()  # when the account counts as degraded
