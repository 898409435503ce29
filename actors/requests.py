"""What clients send: every request body and query the API takes, as attrs models.

The web front's one cattrs converter (`web/converter.py`) structures JSON bodies and query
strings into these, strictly (no coercion, unknown fields refused), so the actors receive
typed values; the checks that need the instrument master, the calendar or prices stay in
`validation.py`. The API contract is generated from these classes, so each field says what it
means for a client (`metadata["doc"]`), and its bounds and format are in its metadata too
(`minimum`, `maximum`, `exclusive_minimum`, `min_length`, `max_length`, `pattern`,
`min_items`, `max_items`). Enumerations are `Literal` types; optional fields default to None.
Fields are listed in the order their problems are reported, so the models are keyword-only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

import attrs

__all__ = [
    "DEFAULT_AUDIT_LIMIT", "DEFAULT_TIMEOUT_S", "MAX_AUDIT_LIMIT", "MAX_INSTRUMENTS_LIMIT",
    "MAX_BASKET_NAME", "MAX_LEGS", "MAX_TIMEOUT_S", "AuditQuery", "BasketName", "BatchRequest",
    "body_hash", "Exchange", "Execution", "ExitRequest",
    "InstrumentsQuery", "KiteCallbackQuery", "LegRequest", "ModifyRequest", "OptionChainQuery",
    "OrderStreamQuery", "OrderType", "DEFAULT_CHAIN_STRIKES", "MAX_CHAIN_STRIKES",
    "Product", "SaveBasketRequest", "TransactionType", "Validity", "Variety", "MAX_WATCHED",
    "WatchRequest",
]

MAX_LEGS = 10
MAX_BASKET_NAME = 64
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 60.0
MAX_INSTRUMENTS_LIMIT = 500
DEFAULT_AUDIT_LIMIT = 100
MAX_AUDIT_LIMIT = 1000
DEFAULT_ORDERS_PAGE = 100
MAX_ORDERS_PAGE = 1000

Exchange = Literal["BCD", "BFO", "BSE", "CDS", "MCX", "NFO", "NSE"]
TransactionType = Literal["BUY", "SELL"]
OrderType = Literal["LIMIT", "MARKET", "SL", "SL-M"]
Product = Literal["CNC", "MIS", "NRML"]
Validity = Literal["DAY", "IOC"]
Variety = Literal["regular"]
Execution = Literal["hedge_first", "parallel"]
InstrumentsExchange = Literal["NFO", "NSE"]


@attrs.frozen(kw_only=True)
class LegRequest:
    """One order: a leg of a batch (`POST /accounts/{id}/batch-orders`), or the whole body of
    `POST /accounts/{id}/orders`. Kite's order fields; orderdesk sets the tag itself."""

    tradingsymbol: str = attrs.field(metadata={
        "doc": "the instrument's trading symbol as in the instrument master, e.g. "
               "NIFTY24DEC24000CE; must be a current contract", "min_length": 1})
    exchange: Exchange = attrs.field(metadata={
        "doc": "the exchange the symbol trades on (CNC is refused on the derivative "
               "exchanges NFO, BFO, CDS, BCD, MCX); it must be open now"})
    transaction_type: TransactionType = attrs.field(metadata={"doc": "BUY or SELL"})
    order_type: OrderType = attrs.field(metadata={
        "doc": "MARKET; LIMIT (needs price); SL (needs price and trigger_price; a BUY's trigger "
               "not above the price, a SELL's not below); SL-M (needs trigger_price)"})
    product: Product = attrs.field(metadata={
        "doc": "NRML (carry forward), MIS (intraday) or CNC (equity delivery only)"})
    validity: Validity = attrs.field(default="DAY", metadata={
        "doc": "DAY (until the session ends) or IOC (immediate or cancel)"})
    variety: Variety = attrs.field(default="regular", metadata={
        "doc": "Kite's order variety; only regular is supported"})
    quantity: int = attrs.field(metadata={
        "doc": "units (not lots): a whole number above 0, a multiple of the instrument's lot "
               "size, at most its freeze quantity", "minimum": 1})
    price: float | None = attrs.field(default=None, metadata={
        "doc": "the limit price, for LIMIT and SL only; a multiple of the instrument's tick "
               "size (0 or absent: none)", "minimum": 0})
    trigger_price: float | None = attrs.field(default=None, metadata={
        "doc": "the trigger price, for SL and SL-M only; a multiple of the instrument's tick "
               "size (0 or absent: none)", "minimum": 0})
    market_protection: float | None = attrs.field(default=None, metadata={
        "doc": "for MARKET and SL-M orders only: -1 (the broker's automatic protection) or a "
               "percentage above 0, at most 100", "minimum": -1, "maximum": 100})
    tag: str | None = attrs.field(default=None, metadata={
        "doc": "reserved: orderdesk tags every order itself, so a body that sends a tag is "
               "refused (rule `forbidden`); leave it out", "max_length": 0})


@attrs.frozen(kw_only=True)
class BatchRequest:
    """A basket placed all-or-nothing (`POST /accounts/{id}/batch-orders`): every leg is
    validated first, then placed; with `rollback_on_failure` the filled legs are reversed when
    any leg fails."""

    orders: list[LegRequest] = attrs.field(metadata={
        "doc": "the legs, placed in this order by `hedge_first`, all at once by `parallel`",
        "min_items": 1, "max_items": MAX_LEGS})
    rollback_on_failure: bool = attrs.field(default=True, metadata={
        "doc": "reverse the legs that filled when another leg fails (true by default)"})
    execution: Execution = attrs.field(default="parallel", metadata={
        "doc": "parallel: every leg at once; hedge_first: the buys first, the sells once they "
               "fill (a parallel basket whose margin only fits hedged runs hedge_first, and "
               "the result says why)"})
    timeout_s: float = attrs.field(default=DEFAULT_TIMEOUT_S, metadata={
        "doc": "seconds every leg has to fill before the batch counts it as failed",
        "exclusive_minimum": 0, "maximum": MAX_TIMEOUT_S})


@attrs.frozen(kw_only=True)
class BasketName:
    """The `{name}` of `/accounts/{id}/baskets/{name}`: what a saved basket is called."""

    name: str = attrs.field(metadata={
        "doc": "1 to 64 printable characters, no '/', no space at either end, not '.' or '..' "
               "(it is a path segment)", "min_length": 1, "max_length": MAX_BASKET_NAME})


@attrs.frozen(kw_only=True)
class SaveBasketRequest:
    """A ticket saved under a name (`PUT /accounts/{id}/baskets/{name}`): its legs, checked for
    shape only (an instrument may expire while the basket is kept). Saving places nothing."""

    orders: list[LegRequest] = attrs.field(metadata={
        "doc": "the legs, as a batch request takes them", "min_items": 1,
        "max_items": MAX_LEGS})


@attrs.frozen(kw_only=True)
class ModifyRequest:
    """Kite's modify of an open order (`PUT /accounts/{id}/orders/{order_id}`): the fields to
    change, at least one; those left out keep the order's values. The instrument, side and
    product cannot change."""

    quantity: int | None = attrs.field(default=None, metadata={
        "doc": "the new quantity in units (not lots): a multiple of the lot size, at most the "
               "freeze quantity, above what has filled", "minimum": 1})
    price: float | None = attrs.field(default=None, metadata={
        "doc": "the new limit price, for LIMIT and SL; a multiple of the tick size",
        "minimum": 0})
    trigger_price: float | None = attrs.field(default=None, metadata={
        "doc": "the new trigger price, for SL and SL-M; a multiple of the tick size",
        "minimum": 0})
    order_type: OrderType | None = attrs.field(default=None, metadata={
        "doc": "the new order type: MARKET, LIMIT (needs a price), SL, SL-M"})


@attrs.frozen(kw_only=True)
class ExitRequest:
    """The position to flatten (`POST /accounts/{id}/positions/exit`): one net position, named
    as the broker's positions name it; orderdesk sends the orders that close it."""

    exchange: Exchange = attrs.field(metadata={"doc": "the position's exchange"})
    tradingsymbol: str = attrs.field(metadata={
        "doc": "the position's trading symbol, e.g. NIFTY24DEC24000CE", "min_length": 1,
        "max_length": 64})
    product: Product = attrs.field(metadata={
        "doc": "the position's product: a position is per instrument and product, and the "
               "orders that close it carry the same"})


@attrs.frozen(kw_only=True)
class InstrumentsQuery:
    """The query of `GET /instruments`: search the instrument master of the accounts the
    caller may see."""

    q: str = attrs.field(default="", metadata={
        "doc": "a symbol prefix or part of the name, case-insensitive (empty: every "
               "instrument)"})
    exchange: InstrumentsExchange | None = attrs.field(default=None, metadata={
        "doc": "only instruments of this exchange (case-insensitive)"})
    limit: int | None = attrs.field(default=None, metadata={
        "doc": "at most this many rows (with q: 50 by default; without: all)",
        "minimum": 1, "maximum": MAX_INSTRUMENTS_LIMIT})
    account: str | None = attrs.field(default=None, metadata={
        "doc": "only this account's instruments (one the caller may see)"})


@attrs.frozen(kw_only=True)
class AuditQuery:
    """The query of `GET /admin/audit`: the newest audit entries first."""

    account: str | None = attrs.field(default=None, metadata={
        "doc": "only the entries of this account (absent or empty: every account)"})
    limit: int = attrs.field(default=DEFAULT_AUDIT_LIMIT, metadata={
        "doc": "at most this many entries", "minimum": 1, "maximum": MAX_AUDIT_LIMIT})


@attrs.frozen(kw_only=True)
class OrdersQuery:
    """The query of `GET /accounts/{id}/orders`: without `before`, every working order and the
    newest final ones (as the websocket's snapshot); with it, a page of older final ones."""

    before: str | None = attrs.field(default=None, metadata={
        "doc": "an order id (`older_before` of the last answer or snapshot): the final orders "
               "that settled before it did, the latest first",
        "pattern": r"^[A-Za-z0-9_-]{1,64}$"})
    limit: int = attrs.field(default=DEFAULT_ORDERS_PAGE, metadata={
        "doc": "with `before`: at most this many orders", "minimum": 1,
        "maximum": MAX_ORDERS_PAGE})


@attrs.frozen(kw_only=True)
class OrderStreamQuery:
    """The query of the order websocket `/ws/orders/{account_id}`: how the client signs in
    (one of an `Authorization: Bearer` header, `ticket` or `access_token`) and where it
    resumes."""

    since: int | None = attrs.field(default=None, metadata={
        "doc": "resume after this sequence number: the updates after it are replayed first "
               "(absent: only new updates)", "minimum": 0})
    ticket: str | None = attrs.field(default=None, metadata={
        "doc": "a one-time ticket from POST /accounts/{id}/ws-ticket, for clients that cannot "
               "send headers (browsers)"})
    access_token: str | None = attrs.field(default=None, metadata={
        "doc": "an API token, when neither a header nor a ticket can be sent"})
    positions: bool = attrs.field(default=False, metadata={
        "doc": "1 (or true): also send `positions` messages (net positions and live P&L, "
               "no seq, never replayed, only the latest kept, a few a second at most)"})


#: Strikes each side of the money an option chain shows by default, and at most.
DEFAULT_CHAIN_STRIKES = 5
MAX_CHAIN_STRIKES = 20


@attrs.frozen(kw_only=True)
class OptionChainQuery:
    """The query of `GET /accounts/{id}/option-chain`: one underlying's options of one expiry,
    around the money."""

    underlying: str = attrs.field(metadata={
        "doc": "the underlying's name in the instrument master, e.g. NIFTY (case-insensitive)",
        "pattern": r"^[A-Za-z0-9&-]{1,32}$"})
    expiry: str | None = attrs.field(default=None, metadata={
        "doc": "YYYY-MM-DD, one of the answer's `expiries` (absent: the nearest)",
        "pattern": r"^\d{4}-\d{2}-\d{2}$"})
    strikes: int = attrs.field(default=DEFAULT_CHAIN_STRIKES, metadata={
        "doc": "strikes each side of the at-the-money one", "minimum": 1,
        "maximum": MAX_CHAIN_STRIKES})


@attrs.frozen(kw_only=True)
class KiteCallbackQuery:
    """The query Kite's login redirects to (`GET /accounts/{id}/kite/callback`)."""

    request_token: str = attrs.field(metadata={
        "doc": "the one-time request token Kite issued, exchanged for an access token",
        "pattern": r"^[A-Za-z0-9_-]{1,128}$"})
    status: str = attrs.field(default="success", metadata={
        "doc": "Kite's login status; anything but success means the login failed"})


def body_hash(body: Mapping[str, Any]) -> str:
    """What identifies a body for idempotency: the SHA-256 of its JSON as sent, keys sorted
    (the same key with another body is a conflict). Batches stored before the typed boundary
    were hashed so, and must still replay."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


#: Instruments one websocket may watch at once.
MAX_WATCHED = 50


@attrs.frozen(kw_only=True)
class WatchRequest:
    """A client message on the order websocket opened with `?positions=1`: watch (or stop
    watching) instruments; their last prices come with the socket's own `positions` messages."""

    action: Literal["watch", "unwatch"] = attrs.field(metadata={
        "doc": "watch: add the instruments; unwatch: remove them"})
    instruments: tuple[str, ...] = attrs.field(metadata={
        "doc": "EXCHANGE:TRADINGSYMBOL, e.g. NFO:NIFTY26DECFUT", "min_items": 1,
        "max_items": MAX_WATCHED})
