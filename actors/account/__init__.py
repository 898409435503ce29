"""One account: its upstream order stream, order book, seq and websocket subscribers."""

from .actor import AccountActor, ActorConfig
from .book import Accepted, Conflict, OrderBook
from .replay import frames_between, stored_snapshot
from .subscribers import LATEST, SLOW_CONSUMER, SubscriberSet, Subscription
from .upstream import UpstreamState

__all__ = [
    "LATEST",
    "SLOW_CONSUMER",
    "Accepted",
    "AccountActor",
    "ActorConfig",
    "Conflict",
    "OrderBook",
    "SubscriberSet",
    "Subscription",
    "UpstreamState",
    "frames_between",
    "stored_snapshot",
]
