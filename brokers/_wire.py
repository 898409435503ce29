"""Kite's payload values, read strictly: what the broker sends is checked before it is believed.

cattrs' defaults make a string of anything (`str(["COMPLETE"])`) and a float of "nan": a status
sent as a list would reach the account's book, whose final-status rule hashes it, and end the
actor. Here a text field takes text only (an id may come as a number), a number takes a number
or a numeric string, finite, and never a boolean; anything else refuses the whole payload, which
the caller logs and skips.
"""

from __future__ import annotations

import math

import cattrs


def _text(value: object, _type: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError(f"expected text, got {type(value).__name__}")


def wire_number(value: object) -> float:
    """A number Kite sent (a JSON number or a numeric string), finite, not a boolean."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _float(value: object, _type: object) -> float:
    return 0.0 if value is None or value == "" else wire_number(value)


def _int(value: object, _type: object) -> int:
    if value is None or value == "":
        return 0
    number = wire_number(value)
    if not number.is_integer():
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(number)


def make_wire_converter() -> cattrs.Converter:
    """The converter for Kite payloads (orders, positions, instrument rows)."""
    converter = cattrs.Converter()
    converter.register_structure_hook(str, _text)
    converter.register_structure_hook(float, _float)
    converter.register_structure_hook(int, _int)
    return converter


def order_id_of(value: object) -> str:
    """An order id as text: Kite sends a string; a number is taken as its digits."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected an order id, got {value!r}")
