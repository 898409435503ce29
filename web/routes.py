"""HTTP routes: the browser Origin check, the auth helpers every blueprint uses, an account's
order book and its websocket tickets. The status routes are in status.py."""

from __future__ import annotations

import logging
from typing import Any, cast

from quart import Blueprint, Response, current_app, g, jsonify, request

from .auth import Identity, bearer_token, origin_allowed
from .errors import Forbidden, NotFound, Unauthorized

log = logging.getLogger("web.routes")

blueprint = Blueprint("http", __name__)


def _app() -> Any:
    return cast(Any, current_app)


@blueprint.before_app_request
async def _check_origin() -> None:
    allowed = _app().deps.settings.allowed_origins
    if not origin_allowed(request.headers.get("Origin"), allowed, request.headers.get("Host")):
        raise Forbidden("origin not allowed")


# -- auth helpers for handlers (later blueprints use them too) ---------------------------


def authenticate() -> Identity:
    """The caller of this request: `Authorization: Bearer` or the `access_token` query."""
    header = request.headers.get("Authorization")
    token = bearer_token(header) if header is not None else request.args.get("access_token")
    identity = _app().auth.identify(token)
    if identity is None:
        raise Unauthorized()
    g.identity_name = identity.name
    return identity


def require_account(account_id: str) -> Identity:
    """401 without valid credentials, 404 for an unknown account, 403 for another account's."""
    identity = authenticate()
    if account_id not in _app().deps.actors:
        raise NotFound(f"unknown account {account_id!r}")
    if not identity.may_access(account_id):
        raise Forbidden("these credentials are for another account")
    return identity


def require_admin() -> Identity:
    identity = authenticate()
    if not identity.admin:
        raise Forbidden("admin token required")
    return identity


# -- accounts -------------------------------------------------------------------------


@blueprint.get("/accounts/<account_id>/orders")
async def account_orders(account_id: str) -> Response:
    require_account(account_id)
    actor = _app().deps.actors[account_id]
    return jsonify({"account": account_id, "seq": actor.seq, "orders": actor.orders()})


@blueprint.post("/accounts/<account_id>/ws-ticket")
async def ws_ticket(account_id: str) -> Response:
    identity = require_account(account_id)
    tickets = _app().tickets
    ticket = tickets.issue(identity, account_id)
    return jsonify({"ticket": ticket, "expires_in": int(tickets.ttl_s)})
