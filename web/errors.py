"""The one error handler: every failure leaves as JSON with a code, a message and the request's
correlation id (plus `fields` for invalid input). Never a stack trace, never Quart's HTML pages.

Handlers raise `ApiError` subclasses (`InvalidInput`, `Unauthorized`, ...); Werkzeug's HTTP
exceptions (routing 404/405, 413, bad JSON) and anything unexpected (500) are mapped here too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
from quart import Quart, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from actors.errors import FieldError

from .middleware import current_correlation_id, redacted_path

log = logging.getLogger("web.errors")

__all__ = [
    "ApiError",
    "Conflict",
    "FieldError",
    "Forbidden",
    "InvalidInput",
    "InvalidJson",
    "NotFound",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_body",
    "install_error_handler",
]


class ApiError(Exception):
    """An error a handler means to return; `status` and `code` pick the response."""

    status = 500
    code = "internal"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.default_message())
        self.message = message or self.default_message()

    @classmethod
    def default_message(cls) -> str:
        return cls.code.replace("_", " ")


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class InvalidJson(ApiError):
    """400: the body is not UTF-8 JSON of the shape the route takes (the message says where)."""

    status, code = 400, "invalid_json"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"

    @classmethod
    def default_message(cls) -> str:
        return "missing or invalid credentials"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class InvalidInput(ApiError):
    """422 listing every problem by field path."""

    status, code = 422, "invalid"

    def __init__(self, fields: Sequence[FieldError], message: str | None = None) -> None:
        self.fields = tuple(fields)
        super().__init__(message or f"{len(self.fields)} invalid field(s)")


class ServiceUnavailable(ApiError):
    status, code = 503, "unavailable"


#: Werkzeug status -> our code, for the HTTP exceptions Quart raises itself.
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "timeout",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def error_body(
    code: str, message: str, fields: Sequence[FieldError] | None = None
) -> dict[str, object]:
    body: dict[str, object] = {
        "error": code,
        "message": message,
        "correlation_id": current_correlation_id(),
    }
    if fields is not None:
        body["fields"] = [attrs.asdict(f) for f in fields]
    return body


def error_response(exc: BaseException) -> Response:
    """The JSON response for any exception (the status decides the code)."""
    fields = None
    if isinstance(exc, ApiError):
        status, code, message = exc.status, exc.code, exc.message
        fields = getattr(exc, "fields", None)
    elif isinstance(exc, HTTPException):
        status = exc.code or 500
        code = _HTTP_CODES.get(status, "http_error" if status < 500 else "internal")
        message = _http_message(exc, status)
    else:
        status, code, message = 500, "internal", "internal error"
    if status >= 500 and not isinstance(exc, ApiError | HTTPException):
        log.error(
            "unhandled %s on %s %s",
            type(exc).__name__,
            request.method if request else "-",
            redacted_path() if request else "-",
            exc_info=exc,
        )
    response = jsonify(error_body(code, message, fields))
    response.status_code = status
    if isinstance(exc, HTTPException) and status == 405:
        allowed = getattr(exc, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="orderdesk"'
    if status == 413:
        # The body was refused unread: what is left of it would be parsed as the next request
        # on this connection. Closing it is the only safe end (RFC 9110 §15.5.14).
        response.headers["Connection"] = "close"
    return response


def _http_message(exc: HTTPException, status: int) -> str:
    if status == 400 and "json" in (exc.description or "").lower():
        return "request body is not valid JSON"
    if status == 404:
        return "no such route"
    if status == 405:
        return f"method {request.method} not allowed here" if request else "method not allowed"
    if status == 413:
        return "request body too large"
    return exc.name.lower() if exc.name else "error"


def install_error_handler(app: Quart) -> None:
    """One handler for everything that derives from Exception (HTTPException included)."""

    async def _handle(exc: Exception) -> Response:
        return error_response(exc)

    app.register_error_handler(Exception, _handle)
