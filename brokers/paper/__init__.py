"""The paper venue: a loopback server speaking a subset of Kite Connect v3.

`serve_venue(VenueConfig(...))` runs REST and the ticker websocket on one port until cancelled
and reports its `VenueAddress` through `task_status`.
"""

from .config import VenueAddress, VenueConfig
from .server import serve_venue

__all__ = ["VenueAddress", "VenueConfig", "serve_venue"]
