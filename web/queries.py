"""The query strings routes take, structured into `actors.requests` query models.

Registered as the converter's structure hooks (`web/converter.py`); each takes the request's
args (a mapping of the first value per name). A bad parameter is a 422 naming it (`InvalidInput`),
the first one found, as these routes have always answered.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import get_args

import attrs
import cattrs

from actors.requests import (
    DEFAULT_AUDIT_LIMIT,
    DEFAULT_CHAIN_STRIKES,
    DEFAULT_ORDERS_PAGE,
    MAX_AUDIT_LIMIT,
    MAX_CHAIN_STRIKES,
    MAX_INSTRUMENTS_LIMIT,
    MAX_ORDERS_PAGE,
    AuditQuery,
    InstrumentsExchange,
    InstrumentsQuery,
    KiteCallbackQuery,
    OptionChainQuery,
    OrdersQuery,
    OrderStreamQuery,
)

from .errors import FieldError, InvalidInput

__all__ = ["int_param", "stream_query", "structure_audit", "structure_callback",
           "structure_chain", "structure_instruments", "structure_orders", "structure_stream"]

Args = Mapping[str, str]
#: Instruments searched with `q` and no `limit`: this many.
DEFAULT_SEARCH_LIMIT = 50
_REQUEST_TOKEN = re.compile(attrs.fields(KiteCallbackQuery).request_token.metadata["pattern"])
_UNDERLYING = re.compile(attrs.fields(OptionChainQuery).underlying.metadata["pattern"])
_ORDER_ID = re.compile(attrs.fields(OrdersQuery).before.metadata["pattern"])


def int_param(args: Args, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """The integer parameter `name` (absent or empty: `default`), or a 422 naming it."""
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    if (raw.isascii() and raw.isdigit() and len(raw) <= len(str(maximum))
            and minimum <= int(raw) <= maximum):
        return int(raw)
    raise InvalidInput([
        FieldError(name, "range", f"{name} must be an integer from {minimum} to {maximum}")
    ])


def structure_instruments(args: Args, _: type = InstrumentsQuery) -> InstrumentsQuery:
    query = args.get("q", "").strip().upper()
    exchange = args.get("exchange", "").strip().upper()
    allowed = get_args(InstrumentsExchange)
    if exchange and exchange not in allowed:
        raise InvalidInput([FieldError("exchange", "enum", f"one of {', '.join(allowed)}")])
    limit = int_param(args, "limit", default=DEFAULT_SEARCH_LIMIT if query else 0, minimum=1,
                      maximum=MAX_INSTRUMENTS_LIMIT)
    return InstrumentsQuery(q=query, exchange=exchange or None, limit=limit or None,
                            account=args.get("account"))


def structure_chain(args: Args, _: type = OptionChainQuery) -> OptionChainQuery:
    """Every problem of the chain's query at once, each naming its parameter."""
    problems: list[FieldError] = []
    underlying = args.get("underlying", "").strip().upper()
    if not underlying:
        problems.append(FieldError("underlying", "required", "underlying is required, e.g. NIFTY"))
    elif not _UNDERLYING.fullmatch(underlying):
        problems.append(FieldError("underlying", "format",
                                   "underlying must be 1..32 letters, digits, '&' or '-'"))
    expiry = args.get("expiry", "").strip() or None
    if expiry is not None and not _is_date(expiry):
        problems.append(FieldError("expiry", "format", "expiry must be a date, YYYY-MM-DD"))
    try:
        strikes = int_param(args, "strikes", default=DEFAULT_CHAIN_STRIKES, minimum=1,
                            maximum=MAX_CHAIN_STRIKES)
    except InvalidInput as exc:
        problems += exc.fields
        strikes = DEFAULT_CHAIN_STRIKES
    if problems:
        raise InvalidInput(problems)
    return OptionChainQuery(underlying=underlying, expiry=expiry, strikes=strikes)


def _is_date(text: str) -> bool:
    try:
        return len(text) == 10 and dt.date.fromisoformat(text).isoformat() == text
    except ValueError:
        return False


def structure_audit(args: Args, _: type = AuditQuery) -> AuditQuery:
    limit = int_param(args, "limit", default=DEFAULT_AUDIT_LIMIT, minimum=1,
                      maximum=MAX_AUDIT_LIMIT)
    return AuditQuery(account=args.get("account") or None, limit=limit)


def structure_orders(args: Args, _: type = OrdersQuery) -> OrdersQuery:
    before = args.get("before") or None
    if before is not None and not _ORDER_ID.fullmatch(before):
        raise InvalidInput([FieldError("before", "format",
                                       "before must be an order id: 1..64 letters, digits, "
                                       "'-' or '_'")])
    limit = int_param(args, "limit", default=DEFAULT_ORDERS_PAGE, minimum=1,
                      maximum=MAX_ORDERS_PAGE)
    return OrdersQuery(before=before, limit=limit)


def structure_stream(args: Args, _: type = OrderStreamQuery) -> OrderStreamQuery:
    raw = args.get("since")
    since = None
    if raw is not None and raw != "":
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            raise InvalidInput([FieldError("since", "range", "since must be an integer >= 0")])
        since = int(raw)
    positions = args.get("positions", "0").lower()
    if positions not in ("0", "1", "true", "false", ""):
        raise InvalidInput([FieldError("positions", "enum", "positions must be 1 or 0")])
    return OrderStreamQuery(since=since, ticket=args.get("ticket"),
                            access_token=args.get("access_token"),
                            positions=positions in ("1", "true"))


def stream_query(converter: cattrs.Converter, args: Args) -> OrderStreamQuery | str:
    """Where an order stream resumes (`since`) and what it wants, or why it is refused: the
    close reason."""
    try:
        query: OrderStreamQuery = converter.structure(args, OrderStreamQuery)
    except InvalidInput as exc:
        return exc.fields[0].message
    return query


def structure_callback(args: Args, _: type = KiteCallbackQuery) -> KiteCallbackQuery:
    """The callback's query; the token is checked only when the login succeeded (a failed
    login is answered as such, whatever came with it)."""
    status = args.get("status", "success")
    token = args.get("request_token")
    if status == "success":
        if token is None:
            problem = FieldError("request_token", "required", "request_token is required")
        elif not _REQUEST_TOKEN.fullmatch(token):
            problem = FieldError("request_token", "format",
                                 "request_token must be 1..128 letters, digits, '-' or '_'")
        else:
            return KiteCallbackQuery(request_token=token, status=status)
        raise InvalidInput([problem])
    return KiteCallbackQuery(request_token=token or "", status=status)
