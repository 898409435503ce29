"""Health reporting: what each supervised child and account actor is doing, and whether an
account's upstream is steady. Below the actors so they may report into it; supervision and the
web front read it."""

from .registry import DEGRADED_UPSTREAM, STATES, ErrorInfo, HealthEntry, HealthRegistry
from .upstream_watch import FrameSource, HealthPolicy, Reason, UpstreamWatch

__all__ = [
    "DEGRADED_UPSTREAM",
    "STATES",
    "ErrorInfo",
    "FrameSource",
    "HealthEntry",
    "HealthPolicy",
    "HealthRegistry",
    "Reason",
    "UpstreamWatch",
]
