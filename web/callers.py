"""Who is calling, decided in one place for HTTP requests and websocket handshakes alike.

The credential sources, in this order: `Authorization: Bearer`, a websocket `ticket` (the order
stream only), the `access_token` query, and the session cookie (the order stream and
`POST …/ws-ticket` only). Only the first one present counts. The cookie is a browser's
ambient credential, so it is taken only from a page of orderdesk's own origin or of
`allowed_origins`: without an `Origin` header (or with `null`) it is refused with 403, and
every other route ignores it, so no state-changing request can ride on it (no CSRF surface).

The Origin rule for every request comes from here too: a browser's request from an origin that
is neither ours nor configured is refused before anything else (403).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs

from .auth import Identity, bearer_token, origin_allowed
from .errors import Forbidden, Unauthorized
from .sessions import cookie_name

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .deps import OrderDeskApp

__all__ = [
    "Caller",
    "Connection",
    "cookie_of",
    "identify",
    "identify_browser",
    "is_tls",
    "origin_refused",
]

TICKET_REFUSED = "ticket unknown, used or expired"
SESSION_REFUSED = "session unknown, signed out or expired: sign in again"
COOKIE_ORIGIN_REFUSED = (
    "the session cookie is accepted only from orderdesk's own page or an allowed origin "
    "(Origin header required)"
)


class Connection(Protocol):
    """What is read of a request or a websocket handshake (Quart's `request`, `websocket`)."""

    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def args(self) -> Mapping[str, str]: ...
    @property
    def cookies(self) -> Mapping[str, str]: ...
    @property
    def scheme(self) -> str: ...


@attrs.frozen
class Caller:
    """An authenticated caller, and how: `session` is the browser session the credential came
    from (the cookie, or a ticket a session asked for); `ticket_account` the account a ticket
    was issued for."""

    identity: Identity
    session: str | None = attrs.field(default=None, repr=False)
    ticket_account: str | None = None


def is_tls(conn: Connection) -> bool:
    return conn.scheme in ("https", "wss")


def cookie_of(conn: Connection) -> str | None:
    """The session cookie's value, under the name this scheme uses."""
    return conn.cookies.get(cookie_name(is_tls(conn))) or None


def origin_refused(conn: Connection, allowed: tuple[str, ...]) -> bool:
    """A browser's request from an origin neither ours nor configured (no Origin: allowed)."""
    return not origin_allowed(conn.headers.get("Origin"), allowed, conn.headers.get("Host"))


def identify(conn: Connection, app: OrderDeskApp) -> Caller:
    """The caller by token only (`Authorization: Bearer`, else the `access_token` query): what
    every route but the browser's two takes. Raises `Unauthorized` (401) without a valid one."""
    header = conn.headers.get("Authorization")
    if header is not None:
        return _token(app, bearer_token(header))
    if "access_token" in conn.args:
        return _token(app, conn.args["access_token"])
    raise Unauthorized()


async def identify_browser(
    conn: Connection, app: OrderDeskApp, *, ticket: bool = False
) -> Caller:
    """The caller, from the first credential source present, the session cookie admitted (and
    a websocket ticket where `ticket`). Raises `Unauthorized` (401 / close 4401) for missing,
    unknown or spent credentials, `Forbidden` (403, before any upgrade) for a cookie without a
    good Origin, and `ServiceUnavailable` (503) when the shared book ([cluster]: Redis) does
    not answer."""
    args = conn.args
    if conn.headers.get("Authorization") is not None:
        return identify(conn, app)
    if ticket and "ticket" in args:
        redeemed = await app.tickets.redeem(args["ticket"])
        if redeemed is None:
            raise Unauthorized(TICKET_REFUSED)
        return Caller(redeemed.identity, redeemed.session, redeemed.account)
    if "access_token" in args:
        return identify(conn, app)
    session_id = cookie_of(conn)
    if session_id is None:
        raise Unauthorized()
    origin = conn.headers.get("Origin")
    if origin is None or origin_refused(conn, app.deps.settings.allowed_origins):
        raise Forbidden(COOKIE_ORIGIN_REFUSED)
    session = await app.sessions.get(session_id)
    if session is None:
        raise Unauthorized(SESSION_REFUSED)
    return Caller(session.identity, session.id)


def _token(app: OrderDeskApp, token: str | None) -> Caller:
    identity = app.auth.identify(token)
    if identity is None:
        raise Unauthorized()
    return Caller(identity)
