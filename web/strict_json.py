"""Strict JSON for request bodies: what Python's `json` lets through and an order must not.

`json.loads` alone is too lenient and too fragile at the web boundary: it raises
`UnicodeDecodeError` on bytes that are not UTF-8 and `RecursionError` on deep nesting (both were
500s), accepts `NaN`/`Infinity` (and turns `1e400` into infinity), keeps the *last* of duplicate
keys silently, takes integers no JavaScript client can represent, and returns strings with NUL
or unpaired surrogates that the store and `jsonify` later refuse. `parse_json` refuses them all:

- not UTF-8, not JSON, nested deeper than `max_depth` → `InvalidJson` (400), naming where;
- non-finite numbers, duplicate keys, integers beyond ±(2^53 - 1), NUL or unpaired surrogates in
  a string → `InvalidInput` (422) with one `FieldError` per offending value, by path.

The depth is checked before parsing, by a linear scan that never recurses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from json.decoder import scanstring
from typing import Any

import attrs

from .errors import FieldError, InvalidInput, InvalidJson

__all__ = ["MAX_DEPTH", "MAX_SAFE_INTEGER", "parse_json"]

MAX_DEPTH = 64
#: The largest integer a double (every JavaScript client's number) holds exactly.
MAX_SAFE_INTEGER = 2**53 - 1
_SAFE_DIGITS = len(str(MAX_SAFE_INTEGER))

_STRUCTURE = re.compile(r'["\[\]{}]')
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


@attrs.frozen
class _Refused:
    """Stands in for a value the parser hooks refused; the walk reports it with its path."""

    rule: str
    message: str


class _Object(dict[str, Any]):
    """A JSON object that repeated some of its keys (only the last value is kept)."""

    duplicates: tuple[str, ...] = ()


def parse_json(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value of `raw`, or `InvalidJson` (400) / `InvalidInput` (422) saying what is wrong."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(
            f"request body is not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}"
        ) from None
    text = text.removeprefix("\ufeff")
    if _nested_deeper_than(text, max_depth):
        raise InvalidJson(f"request body is JSON nested deeper than {max_depth} levels")
    try:
        value = json.loads(
            text,
            parse_constant=_constant,
            parse_float=_float,
            parse_int=_int,
            object_pairs_hook=_object,
        )
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    problems = [FieldError(path, refused.rule, refused.message)
                for path, refused in _refusals(value)]
    if problems:
        raise InvalidInput(problems, f"{len(problems)} value(s) refused in the JSON body")
    return value


def _nested_deeper_than(text: str, limit: int) -> bool:
    """Whether arrays/objects nest deeper than `limit`; brackets inside strings don't count.

    Linear: strings are skipped by the json module's own C scanner. A malformed string stops
    the scan (json.loads then reports it, with its position)."""
    if text.count("[") + text.count("{") <= limit:
        return False  # every order body: nothing to scan
    depth, position = 0, 0
    while (found := _STRUCTURE.search(text, position)) is not None:
        char, position = found.group(), found.end()
        if char == '"':
            try:
                position = scanstring(text, position)[1]
            except json.JSONDecodeError:
                return False
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def _constant(name: str) -> _Refused:
    return _Refused("finite_number", f"{name} is not a number JSON allows here")


def _float(literal: str) -> float | _Refused:
    value = float(literal)
    if math.isfinite(value):
        return value
    return _Refused("finite_number", f"{literal} is out of range for a number")


def _int(literal: str) -> int | _Refused:
    digits = literal.lstrip("-")
    if len(digits) <= _SAFE_DIGITS and int(digits) <= MAX_SAFE_INTEGER:
        return int(literal)
    shown = literal if len(literal) <= 24 else f"{literal[:20]}... ({len(digits)} digits)"
    return _Refused(
        "safe_integer", f"{shown} is beyond ±{MAX_SAFE_INTEGER} (2^53 - 1), not exact in JSON"
    )


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) == len(pairs):
        return value
    counts: dict[str, int] = {}
    for key, _ in pairs:
        counts[key] = counts.get(key, 0) + 1
    repeated = _Object(value)
    repeated.duplicates = tuple(key for key, n in counts.items() if n > 1)
    return repeated


def _text_problem(text: str) -> _Refused | None:
    found = _BAD_TEXT.search(text)
    if found is None:
        return None
    what = "NUL" if found.group() == "\x00" else f"unpaired surrogate \\u{ord(found.group()):04x}"
    return _Refused("valid_text", f"strings must be Unicode text: found {what}")


def _refusals(value: Any, path: str = "") -> Iterator[tuple[str, _Refused]]:
    """Every refused value under `value` with its path (`orders[2].quantity`), in order.

    Recursive, but only to the depth `_nested_deeper_than` already allowed."""
    if isinstance(value, _Refused):
        yield path, value
    elif isinstance(value, str):
        problem = _text_problem(value)
        if problem is not None:
            yield path, problem
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from _refusals(item, f"{path}[{n}]")
    elif isinstance(value, dict):
        for key in getattr(value, "duplicates", ()):
            yield _join(path, key), _Refused("unique_keys", f"key {key!r} appears more than once")
        for key, item in value.items():
            problem = _text_problem(key)
            if problem is not None:
                yield _join(path, key), problem
            yield from _refusals(item, _join(path, key))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
