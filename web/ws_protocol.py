"""The order websocket's protocol as an AsyncAPI 3.0 document (`GET /asyncapi.json`).

AsyncAPI rather than a section of the OpenAPI description: OpenAPI has no notion of messages
flowing both ways on one connection, while AsyncAPI names the channel, its sign-in options, each
message with its schema, and is what client generators for websockets read. The message classes
here mirror what actors/account.py and web/ws.py encode; the websocket tests validate every
message they receive against these schemas (tests/ws_contract.py).
"""

from __future__ import annotations

from typing import Any, Literal

import attrs

from actors.account.positions import PositionView
from actors.requests import OrderStreamQuery

from .api_models import doc, opt
from .openapi import Components, query_parameters, schema_of

__all__ = ["CLOSE_CODES", "MESSAGES", "asyncapi_document", "message_schemas"]

Upstream = str  # connected, connecting, disconnected, auth_expired, ...


@attrs.frozen
class Snapshot:
    """The account's order book: the first message, unless `since` replays updates; again
    after a burst too large to send update by update, and when the IST day turns over (then
    only the new day's orders). It carries every working order and the newest final ones (500
    by default, `[retention] snapshot_finished_orders`): its size does not grow with the day.
    When older final orders were left out, `older_before` says so; GET
    /accounts/{account_id}/orders?before=<older_before> pages them. A client that ignores the
    field sees what it always saw on a day with fewer final orders than that."""

    type: Literal["snapshot"] = doc("snapshot")
    account: str = doc("the account")
    seq: int = doc("the sequence number of the last update included; reconnect with since=seq")
    upstream: Upstream = doc("the broker connection's state")
    orders: list[dict[str, Any]] = doc("Kite order objects (order_id, status, tag, ...): every "
                                       "working order and the newest final ones")
    older_before: str | None = opt("present when older final orders were left out: the oldest "
                                   "final order included, the `before` of GET "
                                   "/accounts/{account_id}/orders for the rest")


@attrs.frozen
class OrderUpdate:
    """One order changed (a Kite order update); `seq` grows by one per update."""

    type: Literal["order"] = doc("order")
    account: str = doc("the account")
    seq: int = doc("this update's sequence number")
    order: dict[str, Any] = doc("the Kite order object as it now stands")
    source: str | None = opt("where the update came from (ticker, poll, placement, ...)")
    event: str | None = opt("what happened, when orderdesk knows more than the broker says")


@attrs.frozen
class Status:
    """The broker connection changed state (also sent after the snapshot or replay)."""

    type: Literal["status"] = doc("status")
    account: str = doc("the account")
    upstream: Upstream = doc("connected, connecting, disconnected, auth_expired, ...")


@attrs.frozen
class WatchedView:
    """An instrument this socket watches and its last price."""

    exchange: str = doc("the exchange, e.g. NFO")
    tradingsymbol: str = doc("e.g. NIFTY26DECFUT")
    instrument_token: int = doc("the broker's instrument token")
    ltp: float | None = doc("the last price; null until the first tick (or no market data)")


@attrs.frozen
class Positions:
    """With `?positions=1`: the account's net positions and live P&L, as
    GET /accounts/{id}/positions answers. No seq, never replayed by `since`; sent after the
    status, then when they change, a few a second at most: a subscriber that reads slowly
    gets the latest only (they never count toward the slow-consumer limit)."""

    type: Literal["positions"] = doc("positions")
    account: str = doc("the account")
    ltp_available: bool = doc("whether every open position has a last price")
    total_pnl: float | None = doc("the sum of the positions' pnl; null when a price is missing")
    positions: list[PositionView] = doc("one per instrument and product")
    watched: list[WatchedView] | None = opt(
        "this socket's watched instruments (`watch` messages), with their last prices; "
        "present once the socket has watched any")


@attrs.frozen
class Pong:
    """The answer to the client's `ping`."""

    type: Literal["pong"] = doc("pong")


@attrs.frozen
class Error:
    """The client sent something other than `ping`; the connection stays open."""

    type: Literal["error"] = doc("error")
    message: str = doc("what was wrong")
    field: str | None = opt("for a `Watch` message: its field that was wrong, e.g. "
                            "instruments[2]")
    rule: str | None = opt("the rule it broke: type, enum, range, format, known, positions")


@attrs.frozen
class Ping:
    """The only client message: the text `ping` (or the JSON {"type": "ping"})."""

    type: Literal["ping"] = doc("ping")


@attrs.frozen
class Watch:
    """With `?positions=1`: watch instruments (at most 50 per socket) or stop watching them;
    their last prices come in this socket's `positions` messages (`watched`), and each is
    subscribed upstream once per account however many sockets watch it. Problems answer
    with an `error` naming the field and rule."""

    action: Literal["watch", "unwatch"] = doc("watch: add the instruments; unwatch: remove them")
    instruments: list[str] = doc("EXCHANGE:TRADINGSYMBOL, e.g. NFO:NIFTY26DECFUT",
                                 min_items=1, max_items=50)


MESSAGES: tuple[type, ...] = (Snapshot, OrderUpdate, Status, Positions, Pong, Error)

CLOSE_CODES = {
    1001: "the server is shutting down: reconnect (with since=seq) after a moment",
    1009: "a client frame larger than the limit (64 KiB)",
    1011: "an unexpected server error",
    4008: "slow consumer: the client did not read fast enough; reconnect with since=seq",
    4400: "bad query (since is not an integer >= 0)",
    4401: "missing or invalid credentials (or a ticket unknown, used or expired)",
    4403: "credentials (or a ticket) of another account",
    4404: "unknown account",
}

_SIGN_IN = (
    "Sign in with one of: an `Authorization: Bearer <token>` header (account or admin token); "
    "`?ticket=` (single-use, from POST /accounts/{account_id}/ws-ticket, for browsers, which "
    "cannot set headers); `?access_token=<token>`; or, in a page served by orderdesk, the "
    "session cookie set by signing in on that page (accepted only on this handshake and on "
    "ws-ticket, and only from orderdesk's own origin or an allowed origin). A browser Origin "
    "that is not allowed is refused before the upgrade with HTTP 403."
)
_DESCRIPTION = (
    "One account's order updates, live. After the handshake the server sends a `snapshot` (or, "
    "with `?since=<seq>`, every update after seq while it is still kept; a snapshot otherwise), "
    "then a `status`, then live `order` and `status` messages. A client that falls behind gets "
    "the waiting messages coalesced into one frame holding a JSON array of messages, in order. "
    "Send the text `ping` (any interval) to get a `pong`. Close codes: "
    + "; ".join(f"{code} {meaning}" for code, meaning in CLOSE_CODES.items()) + ". "
)


def message_schemas() -> tuple[list[dict[str, Any]], Components]:
    """The schema of each server message (refs into the returned components)."""
    components: Components = {}
    return [schema_of(cls, components) for cls in MESSAGES], components


def asyncapi_document() -> dict[str, Any]:
    components: Components = {}
    messages = {cls.__name__: {"name": cls.__name__, "summary": " ".join(cls.__doc__.split()),
                               "payload": schema_of(cls, components)}
                for cls in (*MESSAGES, Ping, Watch)}
    refs = {name: {"$ref": f"#/components/messages/{name}"} for name in messages}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": "orderdesk order stream", "version": "1", "description": _DESCRIPTION},
        "defaultContentType": "application/json",
        "servers": {"orderdesk": {"host": "localhost:8081", "protocol": "ws",
                                  "description": "orderdesk's own address (wss behind TLS)"}},
        "channels": {"orders": {
            "address": "/ws/orders/{account_id}",
            "description": _SIGN_IN,
            "parameters": {"account_id": {"description": "the account's id, as configured"}},
            "messages": refs,
            "bindings": {"ws": {"method": "GET", "query": {"type": "object", "properties": {
                p["name"]: {**p["schema"], "description": p["description"]}
                for p in query_parameters(OrderStreamQuery)}}}},
        }},
        "operations": {
            "sendUpdates": {"action": "send", "channel": {"$ref": "#/channels/orders"},
                            "summary": "orderdesk sends the account's updates",
                            "messages": [{"$ref": f"#/channels/orders/messages/{cls.__name__}"}
                                         for cls in MESSAGES]},
            "receivePing": {"action": "receive", "channel": {"$ref": "#/channels/orders"},
                            "summary": "the client's keep-alive",
                            "messages": [{"$ref": "#/channels/orders/messages/Ping"}]},
            "receiveWatch": {"action": "receive", "channel": {"$ref": "#/channels/orders"},
                             "summary": "the client watches instruments (with ?positions=1)",
                             "messages": [{"$ref": "#/channels/orders/messages/Watch"}]},
        },
        "components": {
            "messages": messages,
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {"type": "httpBearer", "description": "account or admin token"},
                "ticket": {"type": "httpApiKey", "in": "query", "name": "ticket"},
                "accessToken": {"type": "httpApiKey", "in": "query", "name": "access_token"},
            },
        },
    }
