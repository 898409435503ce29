"""Parsing Kite order parameters (form fields or JSON basket legs) into typed requests.

Only shape is checked here: enums, numbers, the tag length. What depends on the instrument or the
venue's state (lot, tick, freeze, session, funds, market protection) is the engine's business.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import VenueError, input_error

EXCHANGES = frozenset({"NSE", "BSE", "NFO", "BFO", "CDS", "BCD", "MCX"})
TRANSACTION_TYPES = frozenset({"BUY", "SELL"})
ORDER_TYPES = frozenset({"MARKET", "LIMIT", "SL", "SL-M"})
PRODUCTS = frozenset({"NRML", "MIS", "CNC", "MTF"})
VALIDITIES = frozenset({"DAY", "IOC", "TTL"})
VARIETIES = frozenset({"regular", "amo", "co", "iceberg", "auction"})
SUPPORTED_VARIETIES = frozenset({"regular"})
MAX_QUANTITY = 100_000_000
MAX_PRICE = 1_000_000_000.0
MAX_TAG = 20

_INT = re.compile(r"^[+-]?\d{1,12}$")


@attrs.frozen
class OrderRequest:
    variety: str
    exchange: str
    tradingsymbol: str
    transaction_type: str
    order_type: str
    quantity: int
    product: str
    price: float = 0.0
    trigger_price: float = 0.0
    validity: str = "DAY"
    disclosed_quantity: int = 0
    tag: str | None = None
    market_protection: float = 0.0


@attrs.frozen
class ModifyRequest:
    quantity: int | None = None
    price: float | None = None
    trigger_price: float | None = None
    order_type: str | None = None
    validity: str | None = None
    disclosed_quantity: int | None = None
    market_protection: float | None = None


def check_variety(variety: str) -> str:
    if variety not in VARIETIES:
        raise input_error(f"Invalid `variety`: {variety[:40]!r}.")
    if variety not in SUPPORTED_VARIETIES:
        raise input_error(f"The paper venue supports only the `regular` variety, not {variety!r}.")
    return variety


def parse_place(variety: str, fields: Mapping[str, Any]) -> OrderRequest:
    check_variety(variety)
    body_variety = _text(fields, "variety")
    if body_variety is not None and body_variety != variety:
        raise input_error("Invalid `variety`: body and path disagree.")
    tag = _text(fields, "tag") or None
    if tag is not None and len(tag) > MAX_TAG:
        raise input_error(f"Invalid `tag`: it can be at most {MAX_TAG} characters long.")
    return OrderRequest(
        variety=variety,
        exchange=_enum(fields, "exchange", EXCHANGES),
        tradingsymbol=_required(fields, "tradingsymbol"),
        transaction_type=_enum(fields, "transaction_type", TRANSACTION_TYPES),
        order_type=_enum(fields, "order_type", ORDER_TYPES),
        quantity=_quantity(fields, "quantity", required=True) or 0,
        product=_enum(fields, "product", PRODUCTS),
        price=_price(fields, "price") or 0.0,
        trigger_price=_price(fields, "trigger_price") or 0.0,
        validity=_enum(fields, "validity", VALIDITIES, default="DAY"),
        disclosed_quantity=_quantity(fields, "disclosed_quantity", allow_zero=True) or 0,
        tag=tag,
        market_protection=_protection(fields) or 0.0,
    )


def parse_modify(fields: Mapping[str, Any]) -> ModifyRequest:
    order_type = _text(fields, "order_type")
    validity = _text(fields, "validity")
    return ModifyRequest(
        quantity=_quantity(fields, "quantity"),
        price=_price(fields, "price"),
        trigger_price=_price(fields, "trigger_price"),
        order_type=_enum(fields, "order_type", ORDER_TYPES) if order_type else None,
        validity=_enum(fields, "validity", VALIDITIES) if validity else None,
        disclosed_quantity=_quantity(fields, "disclosed_quantity", allow_zero=True),
        market_protection=_protection(fields),
    )


def parse_basket(body: Any) -> list[OrderRequest]:
    if not isinstance(body, list) or not body:
        raise input_error("The basket must be a non-empty JSON list of orders.")
    if len(body) > 50:
        raise input_error("A basket can hold at most 50 orders.")
    legs = []
    for n, leg in enumerate(body):
        if not isinstance(leg, dict):
            raise input_error(f"Order {n} of the basket is not an object.")
        try:
            legs.append(parse_place(str(leg.get("variety") or "regular"), leg))
        except VenueError as exc:
            raise input_error(f"Order {n}: {exc.message}") from None
    return legs


def _text(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise input_error(f"Invalid `{name}`.")
    return str(value).strip()


def _required(fields: Mapping[str, Any], name: str) -> str:
    value = _text(fields, name)
    if not value:
        raise input_error(f"Missing `{name}`.")
    if len(value) > 64:
        raise input_error(f"Invalid `{name}`.")
    return value


def _enum(
    fields: Mapping[str, Any], name: str, allowed: frozenset[str], default: str | None = None
) -> str:
    value = _text(fields, name)
    if not value:
        if default is not None:
            return default
        raise input_error(f"Missing `{name}`.")
    if value not in allowed:
        raise input_error(f"Invalid `{name}`.")
    return value


def _number(fields: Mapping[str, Any], name: str) -> float | None:
    value = _text(fields, name)
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise input_error(f"Invalid `{name}`: not a number.") from None
    if not math.isfinite(number):
        raise input_error(f"Invalid `{name}`: not a finite number.")
    return number


def _quantity(
    fields: Mapping[str, Any], name: str, *, required: bool = False, allow_zero: bool = False
) -> int | None:
    value = _text(fields, name)
    if value is None or value == "":
        if required:
            raise input_error(f"Missing `{name}`.")
        return None
    if not _INT.match(value):
        number = _number(fields, name)
        if number is None or not number.is_integer():
            raise input_error(f"Invalid `{name}`: not a whole number.")
        value = str(int(number)) if abs(number) < 1e15 else "1" + "0" * 15
    quantity = int(value)
    if quantity < 0 or (quantity == 0 and not allow_zero):
        raise input_error(f"Invalid `{name}`: it should be greater than 0.")
    if quantity > MAX_QUANTITY:
        raise input_error(f"Invalid `{name}`: it is too large.")
    return quantity


def _price(fields: Mapping[str, Any], name: str) -> float | None:
    number = _number(fields, name)
    if number is None:
        return None
    if number < 0 or number > MAX_PRICE:
        raise input_error(f"Invalid `{name}`: out of range.")
    return number


def _protection(fields: Mapping[str, Any]) -> float | None:
    number = _number(fields, "market_protection")
    if number is None:
        return None
    if number != -1 and not 0 <= number <= 100:
        raise input_error("Invalid `market_protection`: use -1 (automatic) or 1 to 100 (percent).")
    return number
