"""The shapes of the bodies that are still plain dicts in the code, as attrs classes the contract
is generated from (web/openapi.py). Each mirrors the code that builds the dict it names; the
contract tests (tests/test_contract.py) check every answer against them, so a drift fails there.

The request bodies and queries are actors/requests.py's; these are the routes' `jsonify` dicts.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from actors.errors import FieldError
from store import AuditEntry

from .page import InstrumentRow

Json = dict[str, Any]


def doc(text: str, **bounds: object) -> Any:
    """A field documented for the contract: `doc(...)` as a required field."""
    return attrs.field(metadata={"doc": text, **bounds})


def opt(text: str, default: object = None, **bounds: object) -> Any:
    """An optional field (absent, or the default)."""
    return attrs.field(default=default, metadata={"doc": text, **bounds})


# -- errors ------------------------------------------------------------------------------


@attrs.frozen
class ErrorBody:
    """Every error: a machine-readable code, a message for a person, the request's correlation
    id (also in the X-Correlation-ID header), and what the client acts on."""

    error: str = doc("machine-readable code: invalid, invalid_request, invalid_json, "
                     "unauthorized, forbidden, not_found, idempotency_conflict, overloaded, ...")
    message: str = doc("what went wrong, for a person")
    correlation_id: str = doc("the request's correlation id; quote it when reporting a problem")
    fields: list[FieldError] | None = opt("422 only: every problem of the input, by field path")
    tag: str | None = opt("the order's tag to look it up by, when it may have reached the broker")
    reason: str | None = opt("503 overloaded: batches_in_flight, order_budget, order_rate, "
                             "store_latency")
    retry_after_s: int | None = opt("503 overloaded: seconds to wait (also Retry-After)")


# -- orders ------------------------------------------------------------------------------

@attrs.frozen
class OrderBook:
    """The account's orders as the broker last reported them."""

    account: str = doc("the account")
    seq: int = doc("the last update's sequence number (reconnect the websocket with since=seq)")
    orders: list[Json] = doc("Kite order objects (order_id, status, tag, ...): without "
                             "`before`, every working order and the newest final ones; with "
                             "it, final orders, the latest first")
    older_before: str | None = opt("present when older final orders were left out: pass it "
                                   "as `before` for the next page")


@attrs.frozen
class WsTicket:
    """A single-use websocket ticket for this account (browsers cannot set headers)."""

    ticket: str = doc("pass as /ws/orders/{account_id}?ticket=...")
    expires_in: int = doc("seconds it stays valid")


# -- the page ----------------------------------------------------------------------------


@attrs.frozen
class Me:
    """Who the presented token is."""

    admin: bool = doc("the admin token")
    name: str = doc("the token's name")
    accounts: list[str] = doc("the accounts it may see")


@attrs.frozen
class Instruments:
    """Instruments matching the query."""

    instruments: list[InstrumentRow] = doc("prefix matches first")


# -- status ------------------------------------------------------------------------------


@attrs.frozen
class Counts:
    """How many accounts, connected, degraded, failed."""

    total: int = doc("accounts")
    connected: int = doc("upstream connected")
    degraded: int = doc("degraded")
    failed: int = doc("given up on by supervision")


@attrs.frozen
class Health:
    """Liveness: 200 while the process answers; `status` says ok or degraded, and why. Without
    a token nothing per account is shown."""

    status: Literal["ok", "degraded"] = doc("ok or degraded")
    reasons: list[str] = doc("why degraded, as the caller may read it")
    store: Json = doc("the store's health (`ok`; more for the admin)")
    actors: Counts = doc("counts over accounts")
    accounts: dict[str, Json] = doc("the accounts the caller may see")
    supervision: Json | None = opt("admin only: the supervision summary")


@attrs.frozen
class Ready:
    """Readiness, for a load balancer: 200 ready; 503 (error envelope plus `ready`, `reasons`)
    until the store is open and every actor started, or while draining."""

    ready: bool = doc("ready to serve")
    reasons: list[str] | None = opt("503: what is not ready")
    error: str | None = opt("503: not_ready")
    message: str | None = opt("503: the reasons, joined")
    correlation_id: str | None = opt("503: the request's correlation id")


@attrs.frozen
class AccountsHealth:
    """The accounts' health: overall status and counts for anyone, rows for the visible ones."""

    status: Literal["ok", "degraded"] = doc("degraded when any account is")
    summary: Counts = doc("counts over all accounts")
    accounts: list[Json] = doc("account, upstream, state, healthy, degraded, reasons")


@attrs.frozen
class WsStatus:
    """Websocket fan-out per account: subscribers, sequence, queue depths."""

    status: Literal["ok", "degraded"] = doc("degraded when any account is")
    summary: Counts = doc("counts over all accounts")
    connections: int = doc("open order websockets, all accounts")
    accounts: list[Json] = doc("the visible accounts' fan-out statistics")


# -- admin -------------------------------------------------------------------------------


@attrs.frozen
class ActorsView:
    """The supervision tree; `ok` false when degraded (200 either way)."""

    ok: bool = doc("nothing degraded")
    summary: Json = doc("supervision summary")
    actors: Any = doc("every supervised child's state")
    accounts: dict[str, Json] = doc("each account actor's status")
    batches: Json | None = doc("the batch coordinator's statistics (null: not running)")


@attrs.frozen
class TokenRotated:
    """A client token's new value, shown only in this answer: the old value is refused from
    now on, the sessions and tickets it got ended (their sockets closed 4401). It lives in
    memory: put it into orderdesk.toml too, or the configured value is back at the next start."""

    account: str = doc("the account")
    name: str = doc("the token's name")
    token: str = doc("the new bearer token")
    sessions_ended: int = doc("browser sessions signed in with the old value, now ended")


@attrs.frozen
class Restarted:
    """The account's actor was restarted and is ready again."""

    account: str = doc("the account")
    actor: str = doc("the actor's name")
    restarted: bool = doc("true")
    state: str | None = doc("its supervision state")
    restarts: int | None = doc("restarts so far")


@attrs.frozen
class CredentialsBody:
    """The broker access token to load into the running actor."""

    access_token: str = doc("the day's Kite access token (printable ASCII)", min_length=1,
                            max_length=256)


@attrs.frozen
class CredentialsLoaded:
    """The token was loaded; the actor reconnects with it."""

    account: str = doc("the account")
    reloaded: bool = doc("true")
    upstream_before: str | None = doc("the upstream state before")


@attrs.frozen
class Audit:
    """The audit log, newest first."""

    account: str | None = doc("the account filtered on")
    limit: int = doc("at most this many")
    entries: list[AuditEntry] = doc("the entries")


@attrs.frozen
class KiteLoggedIn:
    """The day's access token from the broker's login was loaded into the account."""

    account: str = doc("the account")
    logged_in: bool = doc("true")
    user_id: str = doc("the Kite user who signed in")
    upstream_before: str | None = doc("the upstream state before")
