"""Kite's payload values, read strictly: what the broker sends is checked before it is believed.

cattrs' defaults make a string of anything (`str(["COMPLETE"])`) and a float of "nan": a status
sent as a list would reach the account's book, whose final-status rule hashes it, and end the
actor. Here a text field takes text only (an id may come as a number), a number takes a number
or a numeric string, finite, and never a boolean; anything else refuses the whole payload, which
the caller logs and skips.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import attrs
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


#: How each plain field type is read (as `make_wire_converter` reads it).
_READERS: dict[str, Callable[[object, object], object]] = {
    "str": _text, "str | None": _text, "int": _int, "float": _float}


Reader = Callable[[object], object]


def field_readers(cls: type, *, skip: tuple[str, ...] = ()) -> dict[str, Reader]:
    """Per field of the attrs class `cls` (its types plain: text, whole or real numbers), how
    a wire value is read: the converter's rules, without its generic structuring (which also
    copied the payload kept beside them). A value of None is the caller's to leave out."""
    readers = {}
    for field in attrs.fields(cls):
        if field.name in skip:
            continue
        read = _READERS.get(str(field.type))
        if read is None:
            raise TypeError(f"{cls.__name__}.{field.name}: no reader for {field.type}")
        readers[field.name] = lambda value, read=read: read(value, None)
    return readers


def order_id_of(value: object) -> str:
    """An order id as text: Kite sends a string; a number is taken as its digits."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"expected an order id, got {value!r}")
