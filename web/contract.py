"""The API contract: the route table, the OpenAPI 3.1 document built from it and the models, and
the routes that serve it (`GET /openapi.json`, `GET /asyncapi.json`; `/docs` is the page's).

The document walks the app's own `url_map`, so a route the table does not describe is left out
of the document and fails tests/test_contract.py. Bodies and answers are attrs classes
(actors/outcomes.py, actors/errors.py, web/api_models.py) turned into JSON Schema by
web/openapi.py; each status a route can answer is listed with what it means.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import attrs
from quart import Blueprint, Quart, Response, current_app, request

from actors.account.positions import PositionsReport
from actors.baskets import BasketDeleted, BasketList, SavedBasket
from actors.chain import OptionChain
from actors.errors import FieldError
from actors.outcomes import (
    BasketMarginQuote,
    BatchResult,
    CancelRequested,
    ExitReport,
    KillReport,
    OrderModified,
    OrderOutcomeUnknown,
    OrderPlaced,
)
from actors.requests import (
    MAX_BASKET_NAME,
    AuditQuery,
    BatchRequest,
    ExitRequest,
    InstrumentsQuery,
    KiteCallbackQuery,
    LegRequest,
    ModifyRequest,
    OptionChainQuery,
    OrdersQuery,
    SaveBasketRequest,
)

from . import api_models as m
from .openapi import Components, query_parameters, schema_of
from .ws_protocol import asyncapi_document

__all__ = ["OPERATIONS", "Operation", "contract_blueprint", "path_of", "openapi_document",
           "operation_key"]

contract_blueprint = Blueprint("contract", __name__)

#: What each status means, where a route does not say more.
MEANING = {
    400: "bad request: an invalid Idempotency-Key or request body that is not JSON "
         "(invalid_json), or refused by the broker (rejected)",
    401: "missing or invalid credentials",
    403: "a browser Origin not allowed, or credentials of another kind or account",
    404: "unknown account, order, batch or route",
    409: "refused in this state: idempotency_conflict, kill_in_progress, position_busy, "
         "auth_expired",
    413: "request body too large",
    415: "Content-Type is not JSON",
    422: "invalid input: every problem listed in `fields`",
    502: "the broker answered with a failure, or ([cluster]) the node owning the account "
         "failed while answering a request another node forwarded (owner_failed: the outcome "
         "is unknown)",
    503: "unavailable: overloaded (with Retry-After), store or broker unavailable, starting or "
         "shutting down, or ([cluster]) no node owns the account now (with Retry-After)",
}
ACCOUNT_ERRORS = (401, 403, 404)
BODY_ERRORS = (400, 413, 415, 422)


@attrs.frozen
class Operation:
    """One route as the contract describes it."""

    method: str
    rule: str  # the Quart rule, e.g. /accounts/<account_id>/orders
    summary: str
    auth: str  # none, optional, account, admin, metrics
    answers: dict[int, Any]  # status -> model (None: no JSON body described)
    errors: tuple[int, ...] = ()
    body: type | None = None
    query: type | None = None  # the attrs model of the query string
    idempotency_key: bool = False
    media: str = "application/json"  # of the 200 answer

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.rule


def _order_id_param() -> dict[str, Any]:
    return {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}


_PREFIX = "/accounts/<account_id>"
#: Every route; those a node forwards to the account's owner ([cluster], web/forward.py's
#: OWNER_ROUTES) list 502 (owner_failed) and 503 (no owner now) whatever they do on one node.
OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", f"{_PREFIX}/orders", "The account's order book: every working order and "
              "the newest final ones; with `before`, a page of older final orders", "account",
              {200: m.OrderBook}, (*ACCOUNT_ERRORS, 422, 502, 503), query=OrdersQuery),
    Operation("GET", f"{_PREFIX}/positions", "Net positions and live P&L", "account",
              {200: PositionsReport}, (*ACCOUNT_ERRORS, 502, 503)),
    Operation("POST", f"{_PREFIX}/ws-ticket", "A single-use websocket ticket", "ticket",
              {200: m.WsTicket}, ACCOUNT_ERRORS),
    Operation("POST", f"{_PREFIX}/batch-orders", "Place a multi-leg batch, all or nothing",
              "account", {200: BatchResult},
              (*ACCOUNT_ERRORS, *BODY_ERRORS, 409, 502, 503), BatchRequest,
              idempotency_key=True),
    Operation("POST", f"{_PREFIX}/basket-margin", "The margin a batch would need against the "
              "funds available, and its net premium: nothing placed or stored", "account",
              {200: BasketMarginQuote}, (*ACCOUNT_ERRORS, *BODY_ERRORS, 409, 502, 503),
              BatchRequest),
    Operation("GET", f"{_PREFIX}/batch-orders/<batch_id>", "A batch's result or progress",
              "account", {200: BatchResult}, (*ACCOUNT_ERRORS, 502, 503)),
    Operation("POST", f"{_PREFIX}/orders", "Place one order", "account",
              {200: OrderPlaced, 202: OrderOutcomeUnknown},
              (*ACCOUNT_ERRORS, *BODY_ERRORS, 409, 502, 503), LegRequest, idempotency_key=True),
    Operation("DELETE", f"{_PREFIX}/orders/<order_id>", "Cancel an open order", "account",
              {200: CancelRequested}, (*ACCOUNT_ERRORS, 400, 409, 422, 502, 503)),
    Operation("GET", f"{_PREFIX}/baskets", "The account's saved baskets: names, leg counts, "
              "when saved", "account", {200: BasketList}, (*ACCOUNT_ERRORS, 503)),
    Operation("GET", f"{_PREFIX}/baskets/<name>", "A saved basket's legs: nothing placed",
              "account", {200: SavedBasket}, (*ACCOUNT_ERRORS, 422, 503)),
    Operation("PUT", f"{_PREFIX}/baskets/<name>", "Save a basket under a name (create or "
              "replace; a new name past the account's cap is a 422): nothing placed",
              "account", {200: SavedBasket}, (*ACCOUNT_ERRORS, *BODY_ERRORS, 503),
              SaveBasketRequest),
    Operation("DELETE", f"{_PREFIX}/baskets/<name>", "Delete a saved basket (404 when there "
              "is none of that name)", "account", {200: BasketDeleted},
              (*ACCOUNT_ERRORS, 422, 503)),
    Operation("PUT", f"{_PREFIX}/orders/<order_id>", "Modify an open order: quantity, price, "
              "trigger_price, order_type (409 for a final order; 404 for one the account's "
              "book does not know)", "account", {200: OrderModified},
              (*ACCOUNT_ERRORS, *BODY_ERRORS, 409, 502, 503), ModifyRequest),
    Operation("POST", f"{_PREFIX}/kill", "Kill switch: cancel everything, flatten every "
              "position", "account", {200: KillReport}, (*ACCOUNT_ERRORS, 409, 502, 503)),
    Operation("POST", f"{_PREFIX}/positions/exit", "Flatten one position (market-protected "
              "orders split at the freeze limit; 404 also for no such position)", "account",
              {200: ExitReport}, (*ACCOUNT_ERRORS, *BODY_ERRORS, 409, 502, 503), ExitRequest,
              idempotency_key=True),
    Operation("GET", f"{_PREFIX}/option-chain", "An underlying's options of one expiry "
              "around the money, with last prices (422 also for an unknown underlying or "
              "expiry)", "account", {200: OptionChain}, (*ACCOUNT_ERRORS, 422, 503),
              query=OptionChainQuery),
    Operation("GET", f"{_PREFIX}/kite/login", "Start the daily Kite login (redirect)",
              "none", {302: None}, (404, 409)),
    Operation("GET", f"{_PREFIX}/kite/callback", "The Kite login's redirect back", "none",
              {200: m.KiteLoggedIn}, (400, 403, 404, 409, 422, 502), query=KiteCallbackQuery),
    Operation("GET", "/health", "Liveness", "optional", {200: m.Health}, (401,)),
    Operation("GET", "/ready", "Readiness", "none", {200: m.Ready, 503: m.Ready}),
    Operation("GET", "/accounts/health/status", "The accounts' health", "optional",
              {200: m.AccountsHealth}, (401,)),
    Operation("GET", "/ws/status", "Websocket fan-out per account", "optional",
              {200: m.WsStatus}, (401,)),
    Operation("GET", "/metrics", "Prometheus metrics (the metrics_token only)", "metrics",
              {200: None}, (401, 403), media="text/plain"),
    Operation("GET", "/admin/actors", "The supervision tree", "admin", {200: m.ActorsView},
              (401, 403)),
    Operation("POST", "/admin/accounts/<account_id>/restart", "Restart an account's actor",
              "admin", {200: m.Restarted}, (401, 403, 404, 503)),
    Operation("PUT", "/admin/accounts/<account_id>/credentials", "Load a broker access token",
              "admin", {200: m.CredentialsLoaded}, (401, 403, 404, *BODY_ERRORS),
              m.CredentialsBody),
    Operation("PUT", "/admin/accounts/<account_id>/tokens/<name>", "Rotate a client token",
              "admin", {200: m.TokenRotated}, (401, 403, 404)),
    Operation("POST", "/session", "Sign in: a session cookie for the order websocket and "
              "ws-ticket (HttpOnly, SameSite=Strict, Path=/; __Host- and Secure over TLS)",
              "account", {204: None}, (401,)),
    Operation("DELETE", "/session", "Sign out: end the cookie's session, close its sockets "
              "(4401) and clear the cookie", "account", {204: None}, (401,)),
    Operation("GET", "/admin/audit", "The audit log", "admin", {200: m.Audit},
              (401, 403, 422, 503), query=AuditQuery),
    Operation("GET", "/", "The built-in browser page", "none", {200: None}, media="text/html"),
    Operation("GET", "/static/<path:relative>", "The page's files", "none", {200: None},
              (404,), media="*/*"),
    Operation("GET", "/docs", "This API's documentation page", "none", {200: None},
              media="text/html"),
    Operation("GET", "/redoc", "Redirect to /docs", "none", {302: None}),
    Operation("GET", "/me", "Who the token is", "account", {200: m.Me}, (401,)),
    Operation("GET", "/instruments", "Search the instrument master", "account",
              {200: m.Instruments}, (401, 404, 422, 503), query=InstrumentsQuery),
    Operation("GET", "/openapi.json", "This document", "none", {200: None}),
    Operation("GET", "/asyncapi.json", "The order websocket's protocol (AsyncAPI 3.0)", "none",
              {200: None}),
)
#: Websocket routes: documented in /asyncapi.json, not here.
WEBSOCKETS = frozenset({"/ws/orders/<account_id>"})
_SECURITY = {
    "none": [],
    "optional": [{}, {"accountToken": []}, {"adminToken": []}, {"accessTokenQuery": []}],
    "account": [{"accountToken": []}, {"adminToken": []}, {"accessTokenQuery": []}],
    "admin": [{"adminToken": []}],
    # ws-ticket also takes the session cookie (with an allowed Origin), as the websocket does
    "ticket": [{"accountToken": []}, {"adminToken": []}, {"accessTokenQuery": []},
               {"sessionCookie": []}],
    "metrics": [{"metricsToken": []}],
}


def operation_key(method: str, rule: str) -> tuple[str, str]:
    return method.upper(), rule


def path_of(rule: str) -> str:
    """`/a/<path:x>/<y>` -> `/a/{x}/{y}`."""
    out, rest = "", rule
    while "<" in rest:
        before, _, after = rest.partition("<")
        name, _, rest = after.partition(">")
        out += before + "{" + name.rpartition(":")[2] + "}"
    return out + rest


def _parameters(op: Operation, path: str) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in (p.strip("{}") for p in path.split("/") if p.startswith("{")):
        schema = _order_id_param() if name == "order_id" else {"type": "string", "minLength": 1}
        if name == "name" and "/baskets/" in path:
            schema = {"type": "string", "minLength": 1, "maxLength": MAX_BASKET_NAME}
        entry = {"name": name, "in": "path", "required": True, "schema": schema}
        if name == "account_id":
            entry["description"] = "the account's id, as configured"
            entry["example"] = "primary"
        params.append(entry)
    if op.query is not None:
        params += query_parameters(op.query)
    if op.idempotency_key:
        params.append({"name": "Idempotency-Key", "in": "header", "required": False,
                       "description": "a retry with the same key and body returns the first "
                                      "answer and places nothing again (1..128 printable "
                                      "characters)",
                       "schema": {"type": "string", "minLength": 1, "maxLength": 128}})
    params.append({"$ref": "#/components/parameters/CorrelationId"})
    return params


def _answer(status: int, model: Any, op: Operation, components: Components) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Correlation-ID": {"$ref": "#/components/headers/CorrelationId"}}
    if status == 302:
        return {"description": "redirect", "headers": {
            **headers, "Location": {"schema": {"type": "string"}, "required": True}}}
    if status == 204:
        return {"description": op.summary, "headers": headers}
    if status >= 400 and model is None:
        model = m.ErrorBody
    if status == 503:
        headers["Retry-After"] = {"description": "overloaded or unavailable: seconds to wait",
                                  "schema": {"type": "string"}}
    if model is None:
        media = op.media if status < 300 else "application/json"
        return {"description": op.summary, "headers": headers, "content": {media: {}}}
    described = model.__doc__ if attrs.has(model) and model.__doc__ else MEANING.get(status, "")
    return {"description": " ".join((described or op.summary).split()), "headers": headers,
            "content": {"application/json": {"schema": schema_of(model, components)}}}


def _operation(op: Operation, path: str, components: Components) -> dict[str, Any]:
    responses = {str(s): _answer(s, model, op, components) for s, model in op.answers.items()}
    for status in op.errors:
        if str(status) not in responses:
            responses[str(status)] = _answer(status, None, op, components)
            responses[str(status)]["description"] = MEANING[status]
    responses["403"] = responses.get("403") or {**_answer(403, None, op, components),
                                                "description": MEANING[403]}
    spec: dict[str, Any] = {
        "operationId": op.method.lower() + path.replace("/", "_").replace("{", "")
        .replace("}", "").replace(".", "_").replace("-", "_").rstrip("_") or "root",
        "summary": op.summary,
        "security": _SECURITY[op.auth],
        "parameters": _parameters(op, path),
        "responses": dict(sorted(responses.items())),
    }
    if op.body is not None:
        spec["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": schema_of(op.body, components)}}}
    return spec


def openapi_document(app: Quart) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app`: the routes its url_map has that the table describes."""
    table = {op.key: op for op in OPERATIONS}
    components: Components = {}
    schema_of(FieldError, components)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = table.get((method, rule.rule))
            if op is not None:
                path = path_of(rule.rule)
                paths.setdefault(path, {})[method.lower()] = _operation(op, path, components)
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {"title": "orderdesk", "version": "1",
                 "description": "Order gateway for F&O traders (Kite Connect v3 brokers). "
                                "Errors share one envelope (ErrorBody). The order websocket "
                                "WS /ws/orders/{account_id} is described in /asyncapi.json."},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": _SECURITY_SCHEMES,
            "parameters": {"CorrelationId": {
                "name": "X-Correlation-ID", "in": "header", "required": False,
                "description": "your id for the request (letters, digits, ._:-, at most 64); "
                               "one is made up otherwise", "schema": {"type": "string"}}},
            "headers": {"CorrelationId": {"description": "the request's correlation id",
                                          "required": True, "schema": {"type": "string"}}},
        },
    }


_SECURITY_SCHEMES = {
    "accountToken": {"type": "http", "scheme": "bearer",
                     "description": "an account's token: that account's routes"},
    "adminToken": {"type": "http", "scheme": "bearer",
                   "description": "the admin token: every account, and /admin/*"},
    "metricsToken": {"type": "http", "scheme": "bearer",
                     "description": "Prometheus' metrics_token: /metrics only"},
    "accessTokenQuery": {"type": "apiKey", "in": "query", "name": "access_token",
                         "description": "a token as the access_token query parameter"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "orderdesk_session",
                      "description": "set by POST /session (named __Host-orderdesk_session over "
                                     "TLS); taken only by the order websocket's handshake and "
                                     "ws-ticket, with an Origin of orderdesk's own or of "
                                     "allowed_origins (else 403)"},
    "wsTicket": {"type": "apiKey", "in": "query", "name": "ticket",
                 "description": "the order websocket only: a single-use ticket from POST "
                                "/accounts/{account_id}/ws-ticket"},
}


def _json(app: Quart, key: str, build: Any) -> Response:
    """A document built once per app, with an ETag; cacheable for a minute."""
    cached = app.extensions.get(key)
    if cached is None:
        body = json.dumps(build(app), separators=(",", ":")).encode()
        cached = app.extensions[key] = (body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    body, etag = cached
    headers = {"ETag": etag, "Cache-Control": "public, max-age=60"}
    if etag in {t.strip() for t in request.headers.get("If-None-Match", "").split(",")}:
        return Response(b"", status=304, headers=headers)
    return Response(body, content_type="application/json", headers=headers)


@contract_blueprint.get("/openapi.json")
async def openapi_json() -> Response:
    return _json(current_app, "orderdesk.openapi", openapi_document)


@contract_blueprint.get("/asyncapi.json")
async def asyncapi_json() -> Response:
    return _json(current_app, "orderdesk.asyncapi", lambda app: asyncapi_document())
