"""Status routes, and what each caller may see of them: `/health` (liveness), `/ready`
(readiness), `/accounts/health/status`, `/ws/status` and `/metrics`.

Without a token nothing per account is revealed: the overall status, counts, and reason codes
counted over accounts. An account token sees its own account; the admin token every account and
the supervision tree. `/metrics` takes Prometheus' own `metrics_token` (never the admin's), or is
served without one on a listener of its own (`[server] metrics_bind`, see metrics_server.py).

`/health` answers 200 whenever the process does (its body says degraded, and why); `/ready` is
what a load balancer asks, and no account's state ever makes it 503. Built defensively: an actor
or the store failing to answer shows up as data, never as a 500.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

import attrs
import trio
from quart import Blueprint, Response, jsonify, request

from actors.health import Reason

from .actor_status import actor_status
from .auth import Identity, bearer_token
from .deps import current_deps, current_web
from .errors import Forbidden, Unauthorized
from .metrics import CONTENT_TYPE
from .middleware import current_correlation_id
from .routes import authenticate

__all__ = ["status_blueprint"]

log = logging.getLogger("web.status")

status_blueprint = Blueprint("status", __name__)

STORE_HEALTH_TIMEOUT_S = 2.0
_ACCOUNT = "account:"


def _viewer() -> Identity | None:
    """Who asks: None when no credentials came at all; wrong ones are a 401, as anywhere."""
    if request.headers.get("Authorization") is None and "access_token" not in request.args:
        return None
    return authenticate()


def _may_see(identity: Identity | None, account_id: str) -> bool:
    return identity is not None and identity.may_access(account_id)


async def _store_health() -> dict[str, Any]:
    try:
        with trio.fail_after(STORE_HEALTH_TIMEOUT_S):
            result = await current_deps().store.health()
    except trio.TooSlowError:
        return {"ok": False, "error": "store health check timed out"}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if not isinstance(result, dict):
        return {"ok": bool(result)}
    result = dict(result)
    result.setdefault("ok", True)
    return result


def _account(account_id: str, actor: Any) -> dict[str, Any]:
    """One account as its actor reports it, with its supervision state and why it is degraded."""
    status = actor_status(actor)
    status["account"] = account_id
    entry = current_deps().health.get(_ACCOUNT + account_id)
    try:
        reasons = entry.reasons() if entry is not None else []
    except Exception as exc:
        reasons = [Reason("unknown", f"health unknown: {type(exc).__name__}: {exc}")]
    status["state"] = entry.state if entry is not None else None
    status["restarts"] = entry.restarts if entry is not None else 0
    status["degraded"] = bool(reasons)
    status["reasons"] = [attrs.asdict(reason) for reason in reasons]
    return status


def _accounts() -> dict[str, dict[str, Any]]:
    return {aid: _account(aid, actor) for aid, actor in current_deps().actors.items()}


def _counts(accounts: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """What anyone may know: how many accounts, connected, degraded, failed."""
    views = accounts.values()
    return {
        "total": len(accounts),
        "connected": sum(1 for s in views if s.get("upstream") == "connected"),
        "degraded": sum(1 for s in views if s.get("degraded")),
        "failed": sum(1 for s in views if s.get("state") == "failed"),
    }


def _reason_lines(degraded: Mapping[str, list[Reason]], identity: Identity | None) -> list[str]:
    """Why the process is degraded, as this caller may read it: the accounts it sees by name
    with the whole story, the others counted by reason code; services by name (their messages,
    which may name hosts, for the admin only)."""
    lines: list[str] = []
    hidden: Counter[str] = Counter()
    admin = identity is not None and identity.admin
    for name, reasons in degraded.items():
        if not name.startswith(_ACCOUNT):
            lines += [f"{name}: {r.message if admin else r.code}" for r in reasons]
        elif _may_see(identity, name.removeprefix(_ACCOUNT)):
            lines += [f"{name}: {r.message}" for r in reasons]
        else:
            hidden.update(r.code for r in reasons)
    for code, count in sorted(hidden.items()):
        lines.append(f"{count} account{'s' if count > 1 else ''}: {code}")
    return lines


@status_blueprint.get("/health")
async def health() -> Response:
    """Liveness: 200 while the process answers; the body says ok or degraded, and why."""
    identity = _viewer()
    deps = current_deps()
    store = await _store_health()
    accounts = _accounts()
    degraded = deps.health.reasons()
    lines = _reason_lines(degraded, identity)
    if not store.get("ok") and "store" not in degraded:  # seen here before the monitor saw it
        lines.insert(0, "store: " + (str(store.get("error")) if identity else "unavailable"))
    body: dict[str, Any] = {
        "status": "degraded" if lines else "ok",
        "reasons": lines,
        "store": store if identity is not None and identity.admin else {"ok": store["ok"]},
        "actors": _counts(accounts),
        "accounts": {
            aid: {key: s.get(key) for key in ("upstream", "state", "degraded", "reasons")}
            for aid, s in accounts.items() if _may_see(identity, aid)
        },
    }
    if identity is not None and identity.admin:
        body["supervision"] = deps.health.summary()
    return jsonify(body)


@status_blueprint.get("/ready")
async def ready() -> tuple[Response, int]:
    """Readiness: 503 until the store is open and every actor started, then only while the store
    is down or the process drains. No account's health counts (nor is any account named)."""
    deps = current_deps()
    unready = deps.health.unready(_ACCOUNT + a.id for a in deps.settings.accounts)
    if not unready:
        return jsonify({"ready": True}), 200
    return jsonify({
        "ready": False,
        "reasons": unready,
        "error": "not_ready",
        "message": "; ".join(unready),
        "correlation_id": current_correlation_id(),
    }), 503


@status_blueprint.get("/accounts/health/status")
async def accounts_health() -> Response:
    identity = _viewer()
    accounts = _accounts()
    return jsonify({
        "status": "degraded" if any(s["degraded"] for s in accounts.values()) else "ok",
        "summary": _counts(accounts),
        "accounts": [
            {
                "account": aid,
                "upstream": s.get("upstream"),
                "state": s.get("state"),
                "healthy": s.get("upstream") == "connected" and not s["degraded"],
                "degraded": s["degraded"],
                "reasons": s["reasons"],
            }
            for aid, s in accounts.items() if _may_see(identity, aid)
        ],
    })


_WS_STATUS_KEYS = (
    "upstream", "subscribers", "seq", "orders", "last_event_age_s", "reconnects", "restarts",
    "max_queue_depth", "state", "degraded", "reasons",
)


@status_blueprint.get("/ws/status")
async def ws_status() -> Response:
    identity = _viewer()
    accounts = _accounts()
    visible = []
    for aid, status in accounts.items():
        if not _may_see(identity, aid):
            continue
        view = {"account": aid, **{key: status.get(key) for key in _WS_STATUS_KEYS}}
        if "error" in status:
            view["error"] = status["error"]
        visible.append(view)
    return jsonify({
        "status": "degraded" if any(s["degraded"] for s in accounts.values()) else "ok",
        "summary": _counts(accounts),
        "connections": sum(int(s.get("subscribers") or 0) for s in accounts.values()),
        "accounts": visible,
    })


@status_blueprint.get("/metrics")
async def metrics() -> Response:
    """Prometheus text, for the `metrics_token` only (it names every account)."""
    web = current_web()
    if not web.deps.settings.metrics_token:
        raise Forbidden("/metrics is off here: set [server] metrics_token (Prometheus' own "
                        "bearer token) or serve it on [server] metrics_bind")
    token = bearer_token(request.headers.get("Authorization"))
    if web.auth.is_metrics_token(token):
        return Response(web.deps.metrics.render(), content_type=CONTENT_TYPE)
    if web.auth.identify(token) is not None:
        raise Forbidden("/metrics takes the metrics_token, not an account's or the admin's")
    raise Unauthorized("/metrics needs Authorization: Bearer <metrics_token>")
