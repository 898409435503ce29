"""Request context for logs and responses: correlation id, timing, one structured line per request.

The correlation id lives in a contextvar set when a request (or websocket) starts; tasks the
handler starts inherit it. `install_log_context()` makes every `LogRecord` carry it as
`record.correlation_id`, so any handler or formatter (and pytest's caplog) sees it on every line
of the request. Query secrets (`access_token`, `ticket`, `token`) are redacted in everything
logged.
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import time
from urllib.parse import unquote_plus

from quart import Quart, Response, g, request, websocket
from quart.wrappers import Websocket

__all__ = [
    "CORRELATION_HEADER",
    "CorrelationIdFilter",
    "current_correlation_id",
    "install_log_context",
    "install_request_hooks",
    "RedactingFilter",
    "redact_query",
    "redacted_path",
]

CORRELATION_HEADER = "X-Correlation-ID"
PROCESS_TIME_HEADER = "X-Process-Time"
SECRET_PARAMS = frozenset({"access_token", "ticket", "token", "api_key", "request_token"})
REDACTED = "***"

_correlation_id: contextvars.ContextVar[str] = contextvars.ContextVar(
    "orderdesk_correlation_id", default="-"
)
_ACCEPTED = re.compile(r"[^A-Za-z0-9._:\-]")
_MAX_ID = 64

access_log = logging.getLogger("web.access")


def current_correlation_id() -> str:
    return _correlation_id.get()


def new_correlation_id(offered: str | None) -> str:
    """The client's id, sanitised and capped at 64 characters; a fresh one if none is usable."""
    if offered:
        cleaned = _ACCEPTED.sub("", offered)[:_MAX_ID]
        if cleaned:
            return cleaned
    return secrets.token_hex(8)


def redact_query(query: str) -> str:
    """`a=1&access_token=s3cret` -> `a=1&access_token=***` (other values kept as sent)."""
    if not query:
        return ""
    parts = []
    for part in query.split("&"):
        key, sep, _ = part.partition("=")
        if unquote_plus(key).strip().lower() in SECRET_PARAMS:
            parts.append(f"{key}={REDACTED}")
        else:
            parts.append(part)
    return "&".join(parts)


def redacted_path(conn: object | None = None) -> str:
    """The current request's (or websocket's) path with query secrets redacted."""
    target = conn if conn is not None else (request if request else websocket)
    path = target.path
    query = target.query_string.decode("latin-1")
    return f"{path}?{redact_query(query)}" if query else path


def install_log_context() -> None:
    """Give every LogRecord a `correlation_id` attribute (idempotent, process-wide)."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "_orderdesk", False):
        return

    def record_factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.correlation_id = _correlation_id.get()
        return record

    record_factory._orderdesk = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_factory)


_SECRET_IN_TEXT = re.compile(r"((?:access_token|ticket|token)=)[^&\s'\"]+")


class RedactingFilter(logging.Filter):
    """Scrubs query secrets from every record, including other libraries' (trio-websocket logs
    the ticker URL with the broker's access token at DEBUG)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = _SECRET_IN_TEXT.sub(rf"\1{REDACTED}", message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return True


class CorrelationIdFilter(logging.Filter):
    """For handlers configured without `install_log_context()`: adds the same attribute."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "correlation_id"):
            record.correlation_id = _correlation_id.get()
        return True


def begin(headers_source: object) -> str:
    """Start a request's context: correlation id and clock. Returns the id."""
    cid = new_correlation_id(headers_source.headers.get(CORRELATION_HEADER))  # type: ignore[attr-defined]
    _correlation_id.set(cid)
    g.started = time.perf_counter()
    return cid


def install_request_hooks(app: Quart) -> None:
    """Correlation id + timing on every request and websocket; one log line per request."""
    metrics = app.deps.metrics  # type: ignore[attr-defined]

    @app.before_request
    async def _begin_request() -> None:
        begin(request)

    @app.before_websocket
    async def _begin_websocket() -> None:
        begin(websocket)

    @app.after_request
    async def _finish_request(response: Response) -> Response:
        started = g.get("started")
        elapsed = time.perf_counter() - started if started is not None else 0.0
        cid = _correlation_id.get()
        response.headers[CORRELATION_HEADER] = cid
        response.headers[PROCESS_TIME_HEADER] = f"{elapsed * 1000:.3f}ms"
        rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        metrics.http_requests.labels(request.method, rule, str(response.status_code)).inc()
        metrics.http_duration.labels(request.method, rule).observe(elapsed)
        path, ms = redacted_path(request), elapsed * 1000
        access_log.info(
            "http method=%s path=%s status=%d duration_ms=%.3f correlation_id=%s identity=%s",
            request.method,
            path,
            response.status_code,
            ms,
            cid,
            g.get("identity_name", "-"),
            extra={
                "http_method": request.method,
                "http_path": path,
                "http_status": response.status_code,
                "duration_ms": round(ms, 3),
            },
        )
        return response

    @app.after_websocket
    async def _finish_websocket(response: Response | None) -> Response | None:
        if response is not None:  # a refused handshake (HTTP response instead of upgrade)
            response.headers[CORRELATION_HEADER] = _correlation_id.get()
        return response


def log_websocket(ws: Websocket, event: str, **fields: object) -> None:
    """One structured line about a websocket (opened/closed), secrets redacted."""
    extra = " ".join(f"{k}={v}" for k, v in fields.items())
    access_log.info(
        "ws %s path=%s correlation_id=%s %s",
        event,
        redacted_path(ws),
        _correlation_id.get(),
        extra,
    )
