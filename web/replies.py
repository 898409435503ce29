"""The coordinator's answers as HTTP, in one place: the status and JSON body of every typed
error it raises and of every typed result it returns.

The bodies are the API's contract (tests/golden/ records them byte for byte): an error is
`{"error": code, "message": ..., "correlation_id": ...}` plus what the client acts on
(`fields` for invalid input, `tag` of an order to look up, `reason` and `retry_after_s` when
overloaded, with a `Retry-After` header).
"""

from __future__ import annotations

from typing import Any

import cattrs
from quart import Quart, Response, jsonify

from actors.errors import (
    AuthExpired,
    BasketNotFound,
    BatchNotFound,
    BrokerCallFailed,
    BrokerUnavailable,
    CoordinatorError,
    IdempotencyConflict,
    InvalidRequest,
    KillRunning,
    OrderFinal,
    OrderNotFound,
    Overloaded,
    PositionBusy,
    PositionNotFound,
    Rejected,
    StoreUnavailable,
    Unavailable,
    UnknownAccount,
)
from actors.outcomes import OrderOutcomeUnknown

from .deps import current_web
from .middleware import current_correlation_id

__all__ = ["answer", "install_refusal_handler", "refusal", "reply"]

#: When a client may try an `Unavailable` again (seconds): a start, a step-down or a takeover
#: is over within a lease time, and clients retrying every second find it done soon enough.
UNAVAILABLE_RETRY_AFTER = "1"

#: Each refusal's status and error code.
STATUS: dict[type[CoordinatorError], tuple[int, str]] = {
    Rejected: (400, "rejected"),
    UnknownAccount: (404, "unknown_account"),
    BatchNotFound: (404, "not_found"),
    BasketNotFound: (404, "not_found"),
    PositionNotFound: (404, "not_found"),
    OrderNotFound: (404, "not_found"),
    IdempotencyConflict: (409, "idempotency_conflict"),
    KillRunning: (409, "kill_in_progress"),
    PositionBusy: (409, "position_busy"),
    OrderFinal: (409, "order_final"),
    # 409, not 5xx: clients retry a 5xx blindly, and nothing changes until an operator loads
    # the day's token. Not 401 either: the client's own credentials are fine, the broker's are
    # not. 409 says the account is in a state that refuses orders (as kill_in_progress does).
    AuthExpired: (409, "auth_expired"),
    InvalidRequest: (422, "invalid_request"),
    BrokerCallFailed: (502, "broker_unavailable"),
    BrokerUnavailable: (503, "broker_unavailable"),
    StoreUnavailable: (503, "store_unavailable"),
    Unavailable: (503, "unavailable"),
    Overloaded: (503, "overloaded"),
}


def refusal(converter: cattrs.Converter, exc: CoordinatorError) -> tuple[int, dict[str, Any]]:
    """A refusal's status and body (the correlation id aside)."""
    status, code = STATUS[type(exc)]
    body: dict[str, Any] = {"error": code, "message": exc.message}
    match exc:
        case InvalidRequest():
            body["message"] = "the request is invalid; nothing was placed"
            body["fields"] = converter.unstructure(exc.fields)
        case Overloaded():
            if exc.reason == "order_budget":
                body["error"] = "order_budget"
            body.update(reason=exc.reason, retry_after_s=exc.retry_after_s)
        case BrokerUnavailable() | BrokerCallFailed() if exc.tag is not None:
            body["tag"] = exc.tag
    return status, body


def answer(converter: cattrs.Converter, value: object) -> tuple[int, Any]:
    """A result's status and body: 202 for an order whose outcome is unknown, else 200."""
    status = 202 if isinstance(value, OrderOutcomeUnknown) else 200
    return status, converter.unstructure(value)


def reply(value: object) -> tuple[Response, int]:
    """A route's result as its status and JSON (a refusal raised instead leaves through
    `install_refusal_handler`): the one way the order and basket routes answer."""
    status, body = answer(current_web().converter, value)
    return jsonify(body), status


def install_refusal_handler(app: Quart, converter: cattrs.Converter) -> None:
    """Every `CoordinatorError` a route lets through leaves as its status and body."""

    async def _handle(exc: CoordinatorError) -> Response:
        status, body = refusal(converter, exc)
        response = jsonify({**body, "correlation_id": current_correlation_id()})
        response.status_code = status
        if isinstance(exc, Overloaded):  # when to try again
            response.headers["Retry-After"] = str(exc.retry_after_s)
        elif isinstance(exc, Unavailable):  # starting, stopping, or [cluster] no owner here
            response.headers["Retry-After"] = UNAVAILABLE_RETRY_AFTER
        return response

    app.register_error_handler(CoordinatorError, _handle)
