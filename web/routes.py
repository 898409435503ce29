"""HTTP routes: the browser Origin check, the auth helpers every blueprint uses, an account's
order book and its websocket tickets. The status routes are in status.py."""

from __future__ import annotations

import logging
from typing import Any, cast

from quart import Blueprint, Response, current_app, g, jsonify, request

from actors.requests import OrdersQuery

from .auth import Identity
from .callers import Caller, identify, identify_browser, origin_refused
from .errors import Forbidden, NotFound
from .order_pages import older_orders

log = logging.getLogger("web.routes")

blueprint = Blueprint("http", __name__)


def _app() -> Any:
    return cast(Any, current_app)


@blueprint.before_app_request
async def _check_origin() -> None:
    if origin_refused(request, _app().deps.settings.allowed_origins):
        raise Forbidden("origin not allowed")


# -- auth helpers for handlers (later blueprints use them too) ---------------------------


def current_caller() -> Caller:
    """The caller of this request: `Authorization: Bearer` or the `access_token` query."""
    caller = identify(request, _app())
    g.identity_name = caller.identity.name
    return caller


async def browser_caller() -> Caller:
    """As `current_caller`, the session cookie admitted too (web/callers.py says when that is
    allowed); looking the session up may wait on the shared book ([cluster]: Redis)."""
    caller = await identify_browser(request, _app())
    g.identity_name = caller.identity.name
    return caller


def authenticate() -> Identity:
    """The caller of this request, by bearer token (header or `access_token` query) only."""
    return current_caller().identity


def require_account(account_id: str) -> Identity:
    """401 without valid credentials, 404 for an unknown account, 403 for another account's."""
    return _account_caller(account_id, current_caller())


def _account_caller(account_id: str, caller: Caller) -> Identity:
    if account_id not in _app().deps.actors:
        raise NotFound(f"unknown account {account_id!r}")
    if not caller.identity.may_access(account_id):
        raise Forbidden("these credentials are for another account")
    return caller.identity


def require_admin() -> Identity:
    identity = authenticate()
    if not identity.admin:
        raise Forbidden("admin token required")
    return identity


# -- accounts -------------------------------------------------------------------------


@blueprint.get("/accounts/<account_id>/orders")
async def account_orders(account_id: str) -> Response:
    """Every working order and the newest final ones, as the snapshot; with `before`, a page
    of older final orders from the store (the book holds only the newest)."""
    require_account(account_id)
    query = _app().converter.structure(request.args, OrdersQuery)
    actor = _app().deps.actors[account_id]
    seq = actor.seq
    if query.before is None:
        orders, older = actor.recent_orders()
    else:
        orders, older = await older_orders(_app().deps.store, account_id, query.before,
                                           query.limit)
    body: dict[str, Any] = {"account": account_id, "seq": seq, "orders": orders}
    if older is not None:
        body["older_before"] = older
    return jsonify(body)


@blueprint.get("/accounts/<account_id>/positions")
async def account_positions(account_id: str) -> Response:
    require_account(account_id)
    actor = _app().deps.actors[account_id]
    return jsonify(_app().converter.unstructure(actor.positions()))


@blueprint.post("/accounts/<account_id>/ws-ticket")
async def ws_ticket(account_id: str) -> Response:
    caller = await browser_caller()  # a signed-in page may ask with its cookie
    identity = _account_caller(account_id, caller)
    tickets = _app().tickets
    ticket = await tickets.issue(identity, account_id, caller.session)
    return jsonify({"ticket": ticket, "expires_in": int(tickets.ttl_s)})
