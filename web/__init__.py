"""The web front: Quart-Trio app factory, HTTP routes, the order websocket, auth, metrics.

The names below load on first use (PEP 562): the CLI reads `web.settings` on every command, and
importing the app with it (Quart, Hypercorn) cost `orderdesk status` ~1 s of CPU.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Each public name and the module that defines it.
_FACE = {
    "create_app": "app", "serve_web": "app",
    "Authenticator": "auth", "Identity": "auth", "TicketBook": "auth",
    "OrderDeskApp": "deps", "WebConfig": "deps", "WebDeps": "deps", "current_deps": "deps",
    "ApiError": "errors", "Conflict": "errors", "FieldError": "errors", "Forbidden": "errors",
    "InvalidInput": "errors", "InvalidJson": "errors", "NotFound": "errors",
    "ServiceUnavailable": "errors", "Unauthorized": "errors", "UnsupportedMediaType": "errors",
    "Forwarder": "forward", "Owner": "forward", "open_forwarder": "forward",
    "Metrics": "metrics",
    "CorrelationIdFilter": "middleware", "current_correlation_id": "middleware",
    "install_log_context": "middleware",
    "authenticate": "routes", "require_account": "routes", "require_admin": "routes",
}

__all__ = sorted(_FACE)


def __getattr__(name: str) -> Any:
    module = _FACE.get(name)
    if module is None:
        raise AttributeError(f"module 'web' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once: later lookups skip this function
    return value

