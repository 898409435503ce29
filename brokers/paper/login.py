"""Kite's daily login, imitated: the login page's stand-in and `POST /session/token`.

At Kite the user signs in on kite.zerodha.com and is redirected to the app's registered URL with
a `request_token` (single use, valid a few minutes); the app exchanges it for the day's access
token with `checksum = sha256(api_key + request_token + api_secret)`. The venue has no sign-in
form and no app registry: `GET /connect/login?v=3&api_key=paper&user_id=<account>&
redirect_url=<url>` signs `user_id` in at once and redirects to `redirect_url` the way Kite
redirects to the registered URL. A successful exchange issues a fresh access token (the previous
one stops working), as a new login at Kite does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from quart import Response, redirect, request
from quart_trio import QuartTrio

from .accounts import API_KEY
from .config import IST
from .errors import input_error, token_error
from .responses import form_body, ok

if TYPE_CHECKING:
    from .venue import Venue


def checksum(api_key: str, request_token: str, api_secret: str) -> str:
    """Kite's session checksum: hex SHA-256 of api_key + request_token + api_secret."""
    return hashlib.sha256(f"{api_key}{request_token}{api_secret}".encode()).hexdigest()


def add_login_routes(app: QuartTrio, venue: Venue) -> None:
    tokens = venue.request_tokens

    @app.get("/connect/login")
    async def login() -> Response:
        args = request.args
        if args.get("api_key") != API_KEY:
            raise input_error("Invalid `api_key`.")
        account = args.get("user_id") or (
            venue.config.accounts[0] if len(venue.config.accounts) == 1 else "")
        if account not in venue.config.accounts:
            raise input_error("Unknown or missing `user_id`: name the venue account to sign in.")
        target = args.get("redirect_url", "")
        if urlsplit(target).scheme not in ("http", "https"):
            raise input_error("Missing `redirect_url` (an http(s) URL standing for the app's "
                              "registered redirect URL).")
        query = {"request_token": tokens.issue(account), "action": "login",
                 "type": "login", "status": "success"}
        separator = "&" if urlsplit(target).query else "?"
        return redirect(f"{target}{separator}{urlencode(query)}", 302)

    @app.post("/session/token")
    async def session_token() -> Response:
        form = await form_body()
        for field in ("api_key", "request_token", "checksum"):
            if not form.get(field):
                raise input_error(f"Missing `{field}`.")
        if form["api_key"] != API_KEY:
            raise token_error("Invalid `api_key`.")
        account = tokens.account_of(form["request_token"])
        if account is None:
            raise token_error("Token is invalid or has expired.")
        expected = checksum(API_KEY, form["request_token"], venue.config.api_secret)
        if not hmac.compare_digest(expected, form["checksum"]):
            raise token_error("Invalid `checksum`.")
        tokens.consume(form["request_token"])
        return ok(_session(account, venue.accounts.issue(account)))


def _session(account: str, access_token: str) -> dict[str, Any]:
    """Kite's `POST /session/token` data for `account` (the fields of its user object)."""
    return {
        "user_type": "individual",
        "email": f"{account}@paper.invalid",
        "user_name": f"Paper {account}",
        "user_shortname": account,
        "broker": "PAPER",
        "exchanges": ["NSE", "NFO", "BSE", "BFO", "CDS", "MCX"],
        "products": ["CNC", "NRML", "MIS"],
        "order_types": ["MARKET", "LIMIT", "SL", "SL-M"],
        "avatar_url": None,
        "user_id": account,
        "api_key": API_KEY,
        "access_token": access_token,
        "public_token": secrets.token_hex(16),
        "refresh_token": "",
        "enctoken": "",
        "login_time": dt.datetime.now(IST).strftime("%Y-%m-%d %H:%M:%S"),
        "meta": {"demat_consent": "physical"},
    }
