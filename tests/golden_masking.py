"""Masking for the golden record of the API (tests/test_golden.py): volatile values out, every
other byte kept.

A JSON body is compared byte for byte after masking. It is parsed (key order kept), the
volatile values are replaced, and the *encoding* that reproduces the original bytes exactly
(compact or spaced separators, ASCII escapes or not, a trailing newline) is recorded with it:
rendering the masked value in that encoding is the masked text. A body no encoding reproduces
(a reordered or reformatted one) is kept as text.

What is masked, by key name (`MASKED_KEYS`): ids the service or the venue makes up (order,
batch, exchange order ids, tickets, correlation ids, request tokens), timestamps and durations,
prices from the venue's price simulation (it ticks with the clock), and counters that
depend on timing (heartbeat ages, reconnects, queue depths). A masked id is numbered in order of
first appearance (`<batch_id:1>`), so the record still shows which answers name the same thing;
where the id reappears inside text (a path, a message, a tag) it is replaced by the same
placeholder. Ports of loopback addresses are masked in text, and `tag` keeps its shape with the
batch id masked (`od<batch_id:1>0L0`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["MASKED_KEYS", "Masker", "encoding_of", "render"]

#: Ids worth following through the record: value -> "<key:n>", numbered by first appearance.
ID_KEYS = frozenset({"order_id", "order_ids", "parent_order_id", "batch_id", "ticket",
                     "request_token"})
#: Other made-up values: value -> "<key>".
OPAQUE_KEYS = frozenset({"correlation_id", "exchange_order_id", "guid", "checksum", "token"})
TIME_KEYS = frozenset({
    "order_timestamp", "exchange_timestamp", "exchange_update_timestamp", "at", "started_at",
    "last_event_at", "last_event_age_s", "duration_ms", "uptime_s", "emitted_at", "latency_ms",
    "created_at", "updated_at",
})
#: From the venue's price simulation, which ticks with the clock.
PRICE_KEYS = frozenset({"price", "average_price"})
#: Rupee amounts priced from the venue's simulation (the basket margin quote): masked when
#: numbers only, as the contract's schemas use `required` for lists of names.
MONEY_KEYS = frozenset({"required", "available", "short_by", "net_premium"})
#: The option chain's last prices and the money they put the at-the-money strike at (numbers
#: only: a price the broker did not give stays null).
QUOTE_KEYS = frozenset({"last_price", "underlying_price", "atm_strike"})
#: Counters that depend on timing.
TIMING_KEYS = frozenset({"reconnects", "max_queue_depth", "pending_jobs", "pending_commits"})
MASKED_KEYS = ID_KEYS | OPAQUE_KEYS | TIME_KEYS | PRICE_KEYS | TIMING_KEYS

_TAG = re.compile(r"^od([a-z2-7]{10})(\d+[A-Z]\d+)$")
_PORT = re.compile(r"(127\.0\.0\.1|localhost)(:|%3A)\d+")
#: Made-up values that travel in query strings (a ticket, a request token).
_QUERY_ID = re.compile(r"\b(ticket|request_token)=([^&\s\"]+)")


class Masker:
    """Masks one scenario's answers; ids keep their numbers across the scenario."""

    def __init__(self) -> None:
        self._ids: dict[str, str] = {}  # volatile text -> its placeholder

    def text(self, value: str) -> str:
        """Known ids and loopback ports replaced inside any text (paths, messages, headers)."""
        for match in _QUERY_ID.finditer(value):
            self._placeholder(match.group(1), match.group(2))
        for raw, placeholder in sorted(self._ids.items(), key=lambda kv: -len(kv[0])):
            value = value.replace(raw, placeholder)
        return _PORT.sub(r"\1\2<port>", value)

    def value(self, value: Any) -> Any:
        """A parsed JSON value with every volatile value masked (ids first learnt, then used)."""
        self._learn(value, None)
        return self._mask(value, None)

    def _placeholder(self, key: str, raw: str) -> str:
        if raw not in self._ids:
            kind = key.removesuffix("s") if key.endswith("_ids") else key
            count = sum(1 for p in self._ids.values() if p.startswith(f"<{kind}:")) + 1
            self._ids[raw] = f"<{kind}:{count}>"
        return self._ids[raw]

    def _learn(self, value: Any, key: str | None) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                self._learn(v, k)
        elif isinstance(value, list):
            for item in value:
                self._learn(item, key)
        elif key in ID_KEYS and isinstance(value, str | int) and not isinstance(value, bool):
            if str(value):
                self._placeholder(key, str(value))
        elif key == "tag" and isinstance(value, str) and (match := _TAG.match(value)):
            self._placeholder("batch_id", match.group(1))

    def _mask(self, value: Any, key: str | None) -> Any:
        if isinstance(value, dict):
            return {k: self._mask(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask(item, key) for item in value]
        if (key in MONEY_KEYS | QUOTE_KEYS and isinstance(value, (int, float))
                and not isinstance(value, bool)):
            return f"<{key}>"
        if value is None or isinstance(value, bool) or key not in MASKED_KEYS:
            return self.text(value) if isinstance(value, str) else value
        if key in ID_KEYS:
            return self._ids.get(str(value), f"<{key}>")
        return f"<{key}>"


_SEPARATORS = {"compact": (",", ":"), "spaced": (", ", ": ")}


def render(value: Any, encoding: str) -> str:
    """`value` as JSON in `encoding` ("compact|spaced [ascii] [newline]")."""
    words = encoding.split()
    text = json.dumps(value, separators=_SEPARATORS[words[0]], ensure_ascii="ascii" in words)
    return text + "\n" if "newline" in words else text


def _encodings() -> Iterable[str]:
    for separators in _SEPARATORS:
        for ascii_ in ("", " ascii"):
            for newline in ("", " newline"):
                yield separators + ascii_ + newline


def encoding_of(text: str, value: Any) -> str | None:
    """The encoding that renders `value` to exactly `text`, if one does."""
    return next((e for e in _encodings() if render(value, e) == text), None)
