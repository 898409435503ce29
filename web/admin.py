"""Admin routes (admin token only; account tokens get 403): the supervision tree, restarting one
account's actor, loading a new broker access token into a running actor, and the audit log.

`GET /admin/actors` answers 200 even when the process is degraded: `ok` says which, and the CLI
turns it into an exit code. Restarts and credential loads are written to the audit log by the
token's *name* (never its value); a store that cannot take the entry does not stop the operation.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import trio
from quart import Blueprint, Response, jsonify, request

from actors.requests import AuditQuery

from .actor_status import actor_status
from .credentials import broker_accepts, load_access_token, record_audit
from .deps import current_deps, current_web
from .errors import FieldError, InvalidInput, NotFound, ServiceUnavailable
from .inputs import json_object
from .routes import require_admin

__all__ = ["MAX_ACCESS_TOKEN_LENGTH", "admin_blueprint"]

log = logging.getLogger("web.admin")

admin_blueprint = Blueprint("admin", __name__, url_prefix="/admin")

MAX_ACCESS_TOKEN_LENGTH = 256
#: A restart waits for the actor to be ready again (it reloads its book from the store).
RESTART_TIMEOUT_S = 30.0
STORE_TIMEOUT_S = 5.0


def _actor_name(account_id: str) -> str:
    return f"account:{account_id}"


def _known_actor(account_id: str) -> Any:
    actor = current_deps().actors.get(account_id)
    if actor is None:
        raise NotFound(f"unknown account {account_id!r}")
    return actor


def _batch_statistics(batches: Any) -> dict[str, Any] | None:
    if batches is None:
        return None
    return attrs.asdict(batches.statistics())


@admin_blueprint.get("/actors")
async def actors() -> Response:
    require_admin()
    deps = current_deps()
    summary = deps.health.summary()
    accounts = {aid: actor_status(actor) for aid, actor in deps.actors.items()}
    if deps.ownership is not None:  # [cluster]: which node owns each account, as this one sees
        for aid, owner in deps.ownership().items():
            accounts[aid]["owner"] = dict(owner)
    return jsonify({
        "ok": bool(summary.get("ok")),
        "summary": summary,
        "actors": deps.health.snapshot(),
        "accounts": accounts,
        "batches": _batch_statistics(deps.batches),
    })


@admin_blueprint.post("/accounts/<account_id>/restart")
async def restart(account_id: str) -> Response:
    identity = require_admin()
    _known_actor(account_id)
    supervisor = current_deps().supervisor
    if supervisor is None:
        raise ServiceUnavailable("no account supervisor in this process")
    name = _actor_name(account_id)
    # Shielded: a client hanging up must not cancel a restart half-way (the child would be
    # stopped and never started again). Bounded, so a stuck start cannot hold shutdown forever.
    with trio.CancelScope(shield=True):
        with trio.move_on_after(RESTART_TIMEOUT_S) as bound:
            await supervisor.restart_child(name)
    if bound.cancelled_caught:
        raise ServiceUnavailable(f"actor {name} did not become ready in {RESTART_TIMEOUT_S:g}s")
    entry = current_deps().health.get(name)
    await record_audit(account_id, identity.name, "restart", {"actor": name})
    return jsonify({
        "account": account_id,
        "actor": name,
        "restarted": True,
        "state": entry.state if entry else None,
        "restarts": entry.restarts if entry else None,
    })


def _access_token(body: dict[str, Any]) -> str:
    """The `access_token` of the body, or a 422 listing what is wrong with it."""
    token = body.get("access_token")
    problem: FieldError | None = None
    if token is None:
        problem = FieldError("access_token", "required", "access_token is required")
    elif not isinstance(token, str):
        problem = FieldError("access_token", "type", "access_token must be a string")
    elif not token.strip():
        problem = FieldError("access_token", "non_empty", "access_token must not be empty")
    elif not (token.isascii() and token.strip().isprintable()):
        # It goes into the broker's Authorization header: anything else fails every call.
        problem = FieldError(
            "access_token", "printable_ascii", "access_token must be printable ASCII"
        )
    elif len(token) > MAX_ACCESS_TOKEN_LENGTH:
        problem = FieldError(
            "access_token",
            "max_length",
            f"access_token must be at most {MAX_ACCESS_TOKEN_LENGTH} characters",
        )
    if problem is not None:
        raise InvalidInput([problem])
    return token.strip()


@admin_blueprint.put("/accounts/<account_id>/credentials")
async def credentials(account_id: str) -> Response:
    identity = require_admin()
    actor = _known_actor(account_id)
    token = _access_token(await json_object())
    was = await load_access_token(account_id, actor, token, who=identity.name,
                                  action="credentials")
    if not await broker_accepts(actor):
        raise InvalidInput([FieldError(
            "access_token", "refused_by_broker",
            "the broker refused this access token: the account stays in auth_expired",
        )])
    return jsonify({"account": account_id, "reloaded": True, "upstream_before": was})


@admin_blueprint.get("/audit")
async def audit() -> Response:
    require_admin()
    query = current_web().converter.structure(request.args, AuditQuery)
    account, limit = query.account, query.limit
    try:
        with trio.fail_after(STORE_TIMEOUT_S):
            entries = await current_deps().store.list_audit(account, limit)
    except trio.TooSlowError as exc:
        raise ServiceUnavailable("the store did not answer in time") from exc
    except Exception as exc:
        log.warning("audit listing failed: %s", exc)
        raise ServiceUnavailable(f"the store failed: {type(exc).__name__}") from exc
    return jsonify({
        "account": account,
        "limit": limit,
        "entries": [attrs.asdict(entry) for entry in entries],
    })
