"""Orders: multi-leg batches placed as one unit (or rolled back), single orders, crash recovery
and the kill switch. `BatchCoordinator` is the one entry point; see ARCHITECTURE.md."""

from .config import BatchConfig
from .coordinator import BatchCoordinator, CoordinatorStatistics, single_tag
from .placing import Leg, OrderOps, UnknownOutcome, new_batch_id, reverse_request, tag_for

__all__ = [
    "BatchConfig",
    "BatchCoordinator",
    "CoordinatorStatistics",
    "Leg",
    "OrderOps",
    "UnknownOutcome",
    "new_batch_id",
    "reverse_request",
    "single_tag",
    "tag_for",
]
