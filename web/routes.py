"""HTTP routes: health, per-account status, the order book, websocket tickets, metrics.

Status routes are built defensively: one actor or the store failing to answer shows up as data
in the response (and a 503 for `/health`), never as a 500.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import trio
from quart import Blueprint, Response, current_app, g, jsonify, request

from .auth import Identity, bearer_token, origin_allowed
from .errors import Forbidden, NotFound, Unauthorized
from .metrics import CONTENT_TYPE

log = logging.getLogger("web.routes")

blueprint = Blueprint("http", __name__)

STORE_HEALTH_TIMEOUT_S = 2.0


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


# -- status ---------------------------------------------------------------------------


async def _store_health() -> dict[str, Any]:
    store = _app().deps.store
    try:
        with trio.fail_after(STORE_HEALTH_TIMEOUT_S):
            result = await store.health()
    except trio.TooSlowError:
        return {"ok": False, "error": "store health check timed out"}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if not isinstance(result, dict):
        return {"ok": bool(result)}
    result = dict(result)
    result.setdefault("ok", True)
    return result


def _actor_status(account_id: str, actor: Any) -> dict[str, Any]:
    try:
        status = dict(actor.status())
    except Exception as exc:
        status = {"upstream": "unknown", "error": f"{type(exc).__name__}: {exc}"}
    status["account"] = account_id
    entry = _health_entry(f"account:{account_id}")
    status["state"] = entry.get("state") if entry else None
    status["restarts"] = entry.get("restarts", 0) if entry else 0
    status["degraded"] = bool(entry.get("degraded")) if entry else False
    return status


def _health_entry(name: str) -> dict[str, Any] | None:
    try:
        entry = _app().deps.health.get(name)
        if entry is None:
            return None
        return {
            "state": entry.state,
            "restarts": entry.restarts,
            "degraded": entry.degraded,
        }
    except Exception:
        return None


def _all_actor_status() -> dict[str, dict[str, Any]]:
    return {aid: _actor_status(aid, actor) for aid, actor in _app().deps.actors.items()}


@blueprint.get("/health")
async def health() -> tuple[Response, int]:
    store = await _store_health()
    actors = _all_actor_status()
    failed = [aid for aid, s in actors.items() if s.get("state") == "failed"]
    try:
        summary = _app().deps.health.summary()
    except Exception as exc:
        summary = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    ok = bool(store.get("ok")) and not failed
    body = {
        "status": "ok" if ok else "degraded",
        "store": store,
        "actors": {
            "total": len(actors),
            "connected": sum(1 for s in actors.values() if s.get("upstream") == "connected"),
            "failed": failed,
            "degraded": [aid for aid, s in actors.items() if s.get("degraded")],
        },
        "supervision": summary,
    }
    return jsonify(body), 200 if ok else 503


@blueprint.get("/accounts/health/status")
async def accounts_health() -> Response:
    actors = _all_actor_status()
    return jsonify({"accounts": [
        {
            "account": aid,
            "upstream": s.get("upstream"),
            "state": s.get("state"),
            "healthy": s.get("upstream") == "connected" and not s.get("degraded"),
        }
        for aid, s in actors.items()
    ]})


@blueprint.get("/ws/status")
async def ws_status() -> Response:
    accounts = []
    for aid, status in _all_actor_status().items():
        accounts.append({
            "account": aid,
            "upstream": status.get("upstream"),
            "subscribers": status.get("subscribers", 0),
            "seq": status.get("seq"),
            "orders": status.get("orders"),
            "last_event_age_s": status.get("last_event_age_s"),
            "reconnects": status.get("reconnects", 0),
            "restarts": status.get("restarts", 0),
            "max_queue_depth": status.get("max_queue_depth", 0),
            "state": status.get("state"),
            **({"error": status["error"]} if "error" in status else {}),
        })
    total = sum(int(a["subscribers"] or 0) for a in accounts)
    return jsonify({"accounts": accounts, "connections": total})


@blueprint.get("/metrics")
async def metrics() -> Response:
    return Response(_app().deps.metrics.render(), content_type=CONTENT_TYPE)


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
