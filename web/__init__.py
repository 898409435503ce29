"""The web front: Quart-Trio app factory, HTTP routes, the order websocket, auth, metrics."""

from .app import OrderDeskApp, WebConfig, WebDeps, create_app, current_deps, serve_web
from .auth import Authenticator, Identity, TicketBook
from .errors import (
    ApiError,
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    InvalidJson,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from .metrics import Metrics
from .middleware import CorrelationIdFilter, current_correlation_id, install_log_context
from .routes import authenticate, require_account, require_admin

__all__ = [
    "ApiError",
    "Authenticator",
    "Conflict",
    "CorrelationIdFilter",
    "FieldError",
    "Forbidden",
    "Identity",
    "InvalidInput",
    "InvalidJson",
    "Metrics",
    "NotFound",
    "OrderDeskApp",
    "ServiceUnavailable",
    "TicketBook",
    "Unauthorized",
    "UnsupportedMediaType",
    "WebConfig",
    "WebDeps",
    "authenticate",
    "create_app",
    "current_correlation_id",
    "current_deps",
    "install_log_context",
    "require_account",
    "require_admin",
    "serve_web",
]
