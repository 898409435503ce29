"""The shape rules of request bodies: JSON into `LegRequest` / `BatchRequest` / `ExitRequest` /
`SaveBasketRequest` (and a saved basket's `BasketName`), strictly.

Registered as the converter's structure hooks (`web/converter.py`). Strict: no coercion (a
string "75" is not a quantity, true is not a number), unknown fields and a client `tag` are
refused. Every problem is collected by field path and rule, in the order clients have always
seen them; a body with problems raises `MalformedRequest`, carrying the well-formed orders so
the coordinator lists the instrument master's problems with them in the same answer. What
needs the master, the calendar or prices (lots, symbols, sessions, ticks, price rules) is
`actors/validation.py`'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, get_args

import attrs

from actors.errors import FieldError, MalformedRequest
from actors.requests import (
    DEFAULT_TIMEOUT_S,
    MAX_BASKET_NAME,
    MAX_LEGS,
    MAX_TIMEOUT_S,
    BasketName,
    BatchRequest,
    Exchange,
    Execution,
    ExitRequest,
    LegRequest,
    OrderType,
    Product,
    SaveBasketRequest,
    TransactionType,
    Validity,
)

__all__ = ["is_number", "structure_basket", "structure_basket_name", "structure_batch",
           "structure_exit", "structure_leg"]

_LEG_FIELDS = frozenset(a.name for a in attrs.fields(LegRequest))
_BATCH_FIELDS = frozenset(a.name for a in attrs.fields(BatchRequest))
_EXIT_FIELDS = frozenset(a.name for a in attrs.fields(ExitRequest))
MAX_SYMBOL = 64
_ENUMS: tuple[tuple[str, Any, str | None], ...] = (  # field, Literal type, default
    ("exchange", Exchange, None),
    ("transaction_type", TransactionType, None),
    ("order_type", OrderType, None),
    ("product", Product, None),
    ("validity", Validity, "DAY"),
)

Report = Callable[[str, str, str], None]


def structure_leg(raw: Any, _: type = LegRequest) -> LegRequest:
    """One order body (`POST /orders`) as a `LegRequest`, or MalformedRequest."""
    errors: list[FieldError] = []
    leg = _leg(raw, "", errors)
    if leg is None:
        raise MalformedRequest(errors)
    return leg


def structure_batch(raw: Any, _: type = BatchRequest) -> BatchRequest:
    """A batch body as a `BatchRequest`, or MalformedRequest with every shape problem."""
    errors: list[FieldError] = []
    if not isinstance(raw, dict):
        raise MalformedRequest([FieldError("", "type", "the body must be a JSON object")])
    for key in sorted(set(raw) - _BATCH_FIELDS):
        errors.append(FieldError(key, "unknown_field", f"unknown field {key!r}"))
    orders = raw.get("orders")
    legs: list[tuple[int, LegRequest]] = []
    if orders is None:
        errors.append(FieldError("orders", "required", "orders is required"))
    elif not isinstance(orders, list):
        errors.append(FieldError("orders", "type", "orders must be a list"))
    elif not 1 <= len(orders) <= MAX_LEGS:
        errors.append(FieldError("orders", "count", f"a batch has 1 to {MAX_LEGS} orders"))
    else:
        for n, order in enumerate(orders):
            leg = _leg(order, f"orders[{n}].", errors)
            if leg is not None:
                legs.append((n, leg))
    rollback = raw.get("rollback_on_failure", True)
    if not isinstance(rollback, bool):
        errors.append(FieldError("rollback_on_failure", "type", "must be true or false"))
    execution = raw.get("execution", "parallel")
    if execution not in get_args(Execution):
        errors.append(FieldError("execution", "enum", "must be 'parallel' or 'hedge_first'"))
    timeout_s = raw.get("timeout_s", DEFAULT_TIMEOUT_S)
    if not is_number(timeout_s) or not 0 < timeout_s <= MAX_TIMEOUT_S:
        errors.append(FieldError("timeout_s", "range",
                                 f"must be a number above 0, at most {MAX_TIMEOUT_S:g}"))
    if errors:
        raise MalformedRequest(errors, tuple(legs))
    return BatchRequest(orders=[leg for _, leg in legs], rollback_on_failure=rollback,
                        execution=execution, timeout_s=float(timeout_s))


def structure_exit(raw: Any, _: type = ExitRequest) -> ExitRequest:
    """An exit body (`POST /positions/exit`) as an `ExitRequest`, or MalformedRequest."""
    if not isinstance(raw, dict):
        raise MalformedRequest([FieldError("", "type", "the body must be a JSON object")])
    errors = [FieldError(key, "unknown_field", f"unknown field {key!r}")
              for key in sorted(set(raw) - _EXIT_FIELDS)]

    def err(field: str, rule: str, message: str) -> None:
        errors.append(FieldError(field, rule, message))

    symbol = raw.get("tradingsymbol")
    if not isinstance(symbol, str) or not symbol.strip():
        err("tradingsymbol", "required", "tradingsymbol is required")
    elif len(symbol) > MAX_SYMBOL:
        err("tradingsymbol", "length", f"tradingsymbol has at most {MAX_SYMBOL} characters")
    exchange = _enum(raw, "exchange", get_args(Exchange), err, None)
    product = _enum(raw, "product", get_args(Product), err, None)
    if errors:
        raise MalformedRequest(errors)
    return ExitRequest(exchange=exchange, tradingsymbol=symbol, product=product)


def structure_basket_name(raw: Any, _: type = BasketName) -> BasketName:
    """`{"name": ...}` (the path's name) as a `BasketName`, or MalformedRequest. The name is a
    path segment: a '/' could never be asked for again, '.' and '..' are resolved away."""
    name = raw.get("name") if isinstance(raw, dict) else None
    problem = None
    if not isinstance(name, str) or not name:
        problem = FieldError("name", "required", "a basket needs a name")
    elif len(name) > MAX_BASKET_NAME:
        problem = FieldError("name", "length", f"a name has at most {MAX_BASKET_NAME} characters")
    elif not name.isprintable():
        problem = FieldError("name", "printable", "a name has printable characters only")
    elif "/" in name or name.strip() != name or name in (".", ".."):
        problem = FieldError("name", "format", "a name has no '/', no space at either end, and "
                                               "is not '.' or '..'")
    if problem is not None:
        raise MalformedRequest([problem])
    return BasketName(name=name)


def structure_basket(raw: Any, _: type = SaveBasketRequest) -> SaveBasketRequest:
    """A saved basket's body as a `SaveBasketRequest` (its legs' shapes only), or
    MalformedRequest with every problem."""
    if not isinstance(raw, dict):
        raise MalformedRequest([FieldError("", "type", "the body must be a JSON object")])
    errors = [FieldError(key, "unknown_field", f"unknown field {key!r}")
              for key in sorted(set(raw) - {"orders"})]
    orders = raw.get("orders")
    legs: list[LegRequest] = []
    if orders is None:
        errors.append(FieldError("orders", "required", "orders is required"))
    elif not isinstance(orders, list):
        errors.append(FieldError("orders", "type", "orders must be a list"))
    elif not 1 <= len(orders) <= MAX_LEGS:
        errors.append(FieldError("orders", "count", f"a basket has 1 to {MAX_LEGS} orders"))
    else:
        legs = [leg for n, order in enumerate(orders)
                if (leg := _leg(order, f"orders[{n}].", errors)) is not None]
        # kept as sent, unchecked against the master: bounded here instead
        errors += [FieldError(f"orders[{n}].tradingsymbol", "length",
                              f"tradingsymbol has at most {MAX_SYMBOL} characters")
                   for n, order in enumerate(orders) if isinstance(order, dict)
                   and len(str(order.get("tradingsymbol", ""))) > MAX_SYMBOL]
    if errors:
        raise MalformedRequest(errors)
    return SaveBasketRequest(orders=legs)


def _leg(order: Any, prefix: str, errors: list[FieldError]) -> LegRequest | None:
    if not isinstance(order, dict):
        errors.append(FieldError(prefix.rstrip(".") or "", "type", "an order must be an object"))
        return None
    before = len(errors)

    def err(field: str, rule: str, message: str) -> None:
        errors.append(FieldError(prefix + field, rule, message))

    if "tag" in order:
        err("tag", "forbidden", "orderdesk sets the tags; leave tag out")
    for key in sorted(set(order) - _LEG_FIELDS):
        err(key, "unknown_field", f"unknown field {key!r}")
    symbol = order.get("tradingsymbol")
    if not isinstance(symbol, str) or not symbol.strip():
        err("tradingsymbol", "required", "tradingsymbol is required")
    enums = {field: _enum(order, field, get_args(kind), err, default)
             for field, kind, default in _ENUMS}
    if order.get("variety", "regular") != "regular":
        err("variety", "enum", "only the regular variety is supported")
    quantity = order.get("quantity")
    if quantity is None:
        err("quantity", "required", "quantity is required")
    elif not (is_number(quantity) and float(quantity).is_integer()):
        err("quantity", "type", "quantity must be a whole number")
    elif quantity <= 0:
        err("quantity", "positive", "quantity must be above 0")
    prices = {field: order.get(field) for field in ("price", "trigger_price")}
    for field, value in prices.items():
        if value is not None and not is_number(value):
            err(field, "type", f"{field} must be a number, 0 or above")
    protection = order.get("market_protection")
    if protection is not None and (
            not is_number(protection) or not (protection == -1 or 0 < protection <= 100)):
        err("market_protection", "range", "use -1 (automatic) or a percentage 1 to 100")
    if len(errors) > before:
        return None
    # The prices keep their JSON numbers (an int stays an int): the request as sent.
    return LegRequest(tradingsymbol=symbol, quantity=int(quantity), **enums, **prices,
                      market_protection=protection)


def _enum(
    order: dict[str, Any], field: str, allowed: tuple[str, ...], err: Report,
    default: str | None,
) -> Any:
    value = order.get(field, default)
    if value is None:
        err(field, "required", f"{field} is required")
    elif value not in allowed:
        err(field, "enum", f"{field} must be one of {', '.join(sorted(allowed))}")
    return value


def is_number(value: Any) -> bool:
    """A JSON number: an int or a finite float, never a bool."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )
