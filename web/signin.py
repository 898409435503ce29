"""Signing in and out of orderdesk's page, and rotating a client token: what opens and ends a
browser session (web/sessions.py).

- `POST /session` (bearer token only) opens a session and answers 204 with its cookie:
  `orderdesk_session=<opaque id>; Max-Age=<[server] session_ttl_s>; Path=/; HttpOnly;
  SameSite=Strict`, named `__Host-orderdesk_session` and `Secure` when served over TLS. A
  session cookie sent along is ended first (a sign-in never reuses an id).
- `DELETE /session` (bearer token only: no route that changes state takes the cookie) ends the
  session the cookie names, if it is the caller's, closes the sockets it opened (4401) and
  clears the cookie. 204 either way.
- `PUT /admin/accounts/{id}/tokens/{name}` (admin) gives that client token a new random value,
  answered once: the old value is refused from then on, the tickets and sessions it got end and
  their sockets close (4401; with `[cluster]` on every node). The new value lives in this
  process's memory: put it into orderdesk.toml too (every node's), or the configured one is
  back at the next start.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

from quart import Blueprint, Response, current_app, jsonify, request

from store import StoreError

from .auth import Identity
from .callers import cookie_of, is_tls
from .credentials import record_audit
from .errors import NotFound, ServiceUnavailable
from .routes import current_caller, require_admin
from .sessions import cookie_name

__all__ = ["signin_blueprint"]

signin_blueprint = Blueprint("signin", __name__)


def _app() -> Any:
    return cast(Any, current_app)


def _with_cookie(value: str, max_age: int) -> Response:
    response = Response(b"", status=204, headers={"Cache-Control": "no-store"})
    del response.headers["Content-Type"]  # no body, no type
    tls = is_tls(request)
    response.set_cookie(cookie_name(tls), value, max_age=max_age, path="/", secure=tls,
                        httponly=True, samesite="Strict")
    return response


@signin_blueprint.post("/session")
async def sign_in() -> Response:
    identity = current_caller().identity
    sessions = _app().sessions
    previous = cookie_of(request)
    if previous is not None:
        await sessions.end(previous)
    session = await sessions.open(identity)
    return _with_cookie(session.id, int(sessions.ttl_s))


@signin_blueprint.delete("/session")
async def sign_out() -> Response:
    identity = current_caller().identity
    sessions = _app().sessions
    session_id = cookie_of(request)
    session = await sessions.get(session_id) if session_id is not None else None
    if session is not None and (identity.admin or session.identity == identity):
        await sessions.end(session.id)
    return _with_cookie("", 0)


@signin_blueprint.put("/admin/accounts/<account_id>/tokens/<name>")
async def rotate_token(account_id: str, name: str) -> Response:
    admin = require_admin()
    app = _app()
    if account_id not in app.deps.actors:
        raise NotFound(f"unknown account {account_id!r}")
    identity = Identity(name, account_id)
    if not app.auth.knows(identity):
        raise NotFound(f"account {account_id!r} has no token named {name!r}")
    token = secrets.token_urlsafe(32)
    rotation = app.auth.rotation(identity, token)
    if rotation is None:
        raise NotFound(f"account {account_id!r} has no token named {name!r}")
    # The books first: if they cannot answer ([cluster]: Redis down, 503), nothing changed.
    await app.tickets.drop_for(identity)
    ended = await app.sessions.end_for(identity)
    try:  # kept in the store: it outlives a restart, and every node of a cluster takes it
        await app.deps.store.save_token_rotation(rotation)
    except StoreError as exc:
        raise ServiceUnavailable(
            f"the store did not keep the new token ({type(exc).__name__}); the token was not "
            f"rotated ({ended} sessions of it ended): try again") from exc
    app.auth.apply([rotation])
    await record_audit(account_id, admin.name, "token_rotated",
                       {"token": name, "sessions_ended": ended})
    return jsonify({"account": account_id, "name": name, "token": token,
                    "sessions_ended": ended})
