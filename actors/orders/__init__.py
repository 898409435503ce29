"""Orders: multi-leg batches placed as one unit (or rolled back), single orders, crash recovery,
exits and the kill switch. `BatchCoordinator` is the one entry point; ARCHITECTURE.md walks
the path."""

from .config import BatchConfig
from .coordinator import BatchCoordinator, CoordinatorStatistics
from .fence import BrokerFence, LeaseExpiring
from .legs import (
    Leg,
    exit_id,
    exit_tag,
    kill_tag,
    new_batch_id,
    reverse_request,
    single_tag,
    tag_for,
)
from .placing import OrderOps, UnknownOutcome

__all__ = [
    "BatchConfig",
    "BatchCoordinator",
    "BrokerFence",
    "CoordinatorStatistics",
    "LeaseExpiring",
    "Leg",
    "OrderOps",
    "UnknownOutcome",
    "exit_id",
    "exit_tag",
    "kill_tag",
    "new_batch_id",
    "reverse_request",
    "single_tag",
    "tag_for",
]
