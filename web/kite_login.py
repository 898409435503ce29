"""The daily Kite login: `GET /accounts/{id}/kite/login` sends the operator's browser to the
broker's sign-in page; the broker redirects to `GET /accounts/{id}/kite/callback` with a
single-use `request_token`, which is exchanged for the day's access token (the checksum signed
with the account's api_secret) and loaded into the running account, audited, as
`orderdesk credentials` loads a pasted one.

No bearer token on either route: a browser redirect cannot carry one. What protects the
callback is the broker: only a request token its login issued to this app, unused and fresh,
yields a session, and a configured `user_id` must match the one that signed in. Anything else
is a 4xx and leaves the account as it was.
"""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint, Response, jsonify, redirect, request

from actors.requests import KiteCallbackQuery
from brokers.base import BrokerError, BrokerUnavailable
from brokers.kite import KiteBroker

from .credentials import load_access_token, record_audit
from .deps import current_deps, current_web
from .errors import ApiError, Conflict, Forbidden, NotFound

__all__ = ["kite_login_blueprint"]

log = logging.getLogger("web.kite_login")

kite_login_blueprint = Blueprint("kite_login", __name__, url_prefix="/accounts/<account_id>/kite")

#: Kite's request tokens are 32 letters and digits; allow some room, nothing else.


class LoginFailed(ApiError):
    """400: the broker did not sign the user in, or refused the request token."""

    status, code = 400, "login_failed"


class BrokerUnreachable(ApiError):
    status, code = 502, "broker_unavailable"


def _account(account_id: str) -> tuple[Any, Any, KiteBroker]:
    """The account's settings, actor and Kite adapter; 404 unknown, 409 without a login."""
    deps = current_deps()
    settings = deps.settings.account(account_id)
    actor = deps.actors.get(account_id)
    if settings is None or actor is None:
        raise NotFound(f"unknown account {account_id!r}")
    broker = actor.broker
    if not isinstance(broker, KiteBroker) or not settings.api_secret:
        raise Conflict(f"account {account_id!r} has no login: set api_secret_env in its "
                       "[[accounts]] table (the Kite app's secret)")
    return settings, actor, broker


@kite_login_blueprint.get("/login")
async def login(account_id: str) -> Response:
    settings, _, broker = _account(account_id)
    extra = {}
    if settings.broker == "paper":  # the venue's stand-in has no app registry: tell it
        callback = f"{request.host_url.rstrip('/')}/accounts/{account_id}/kite/callback"
        extra = {"user_id": settings.user_id or account_id, "redirect_url": callback}
    return redirect(broker.login_url(**extra), 302)


@kite_login_blueprint.get("/callback")
async def callback(account_id: str) -> Response:
    settings, actor, broker = _account(account_id)
    query = current_web().converter.structure(request.args, KiteCallbackQuery)
    if query.status != "success":
        raise LoginFailed(f"the broker's login ended with status={query.status[:40]!r}; "
                          f"sign in again at /accounts/{account_id}/kite/login")
    try:
        session = await broker.exchange_request_token(query.request_token, settings.api_secret)
    except BrokerUnavailable as exc:
        raise BrokerUnreachable(f"the login exchange failed: {exc}") from exc
    except BrokerError as exc:  # TokenException: a used, expired or foreign token
        raise LoginFailed(f"the broker refused the request token ({exc}): it is used, expired "
                          f"or not this app's; sign in again at /accounts/{account_id}/kite/login"
                          ) from exc
    if settings.user_id is not None and session.user_id != settings.user_id:
        # Someone else's login (a login-CSRF): their token never reaches this account.
        await record_audit(account_id, f"kite-login:{session.user_id}", "login_refused",
                           {"expected_user_id": settings.user_id})
        raise Forbidden(f"signed in as {session.user_id!r}, but account {account_id!r} "
                        f"trades as {settings.user_id!r}: the token was not loaded")
    was = await load_access_token(account_id, actor, session.access_token,
                                  who=f"kite-login:{session.user_id}", action="login",
                                  detail={"user_id": session.user_id})
    log.info("account %s: day's access token loaded by the login of %s", account_id,
             session.user_id)
    return jsonify({"account": account_id, "logged_in": True, "user_id": session.user_id,
                    "upstream_before": was})
