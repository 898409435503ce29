"""The web front: Quart-Trio app factory, HTTP routes, the order websocket, auth, metrics."""

from .app import create_app, serve_web
from .auth import Authenticator, Identity, TicketBook
from .deps import OrderDeskApp, WebConfig, WebDeps, current_deps
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
