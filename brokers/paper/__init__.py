"""The paper venue: a loopback server speaking a subset of Kite Connect v3.

`serve_venue(VenueConfig(...))` runs REST and the ticker websocket on one port until cancelled
and reports its `VenueAddress` through `task_status`. The server (and Quart under it) loads on
first use of `serve_venue`: the settings need only `VenueConfig`, and every CLI command reads them.
"""

from __future__ import annotations

from typing import Any

from .config import VenueAddress, VenueConfig

__all__ = ["VenueAddress", "VenueConfig", "serve_venue"]


def __getattr__(name: str) -> Any:
    if name != "serve_venue":
        raise AttributeError(f"module 'brokers.paper' has no attribute {name!r}")
    from .server import serve_venue

    return serve_venue
