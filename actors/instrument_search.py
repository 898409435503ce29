"""The page's instrument search (`GET /instruments`, the basket ticket's autocomplete) over the
masters of the caller's brokers: merged, upper-cased and ordered once per load of the masters,
not once per keystroke. A keystroke only compares the query with the keys."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import attrs

__all__ = ["SearchIndex", "Searchable", "build_index"]


class Searchable(Protocol):
    """What the search reads of an instrument (`instruments.InstrumentInfo`)."""

    @property
    def exchange(self) -> str: ...
    @property
    def tradingsymbol(self) -> str: ...
    @property
    def name(self) -> str: ...


@attrs.frozen
class SearchIndex:
    """Instruments in merge order (the first broker's wins per exchange and symbol), their
    search keys (symbol and name, upper-cased) and the order matches are listed in."""

    entries: tuple[Searchable, ...]
    keys: tuple[tuple[str, str], ...]  # per entry: SYMBOL, NAME
    by_length: tuple[int, ...]  # entry indexes by (len(symbol), symbol), ties in merge order

    def search(self, query: str | None, exchange: str | None = None) -> list[Searchable]:
        """Without `query`, every instrument (of `exchange`) in merge order; with one (upper
        case), symbol-prefix matches first, then symbol or name substring matches, each
        shortest symbol first: NIFTY before NIFTY's options."""
        if not query:
            return [i for i in self.entries if not exchange or i.exchange == exchange]
        prefix, inside = [], []
        for k in self.by_length:
            info = self.entries[k]
            if exchange and info.exchange != exchange:
                continue
            symbol, name = self.keys[k]
            if symbol.startswith(query):
                prefix.append(info)
            elif query in symbol or query in name:
                inside.append(info)
        return prefix + inside


def build_index(groups: Iterable[Iterable[Searchable]]) -> SearchIndex:
    """The index of `groups` (one per broker, in the caller's order of accounts)."""
    seen: dict[tuple[str, str], Searchable] = {}
    for group in groups:
        for info in group:
            seen.setdefault((info.exchange, info.tradingsymbol), info)
    entries = tuple(seen.values())
    by_length = sorted(range(len(entries)), key=lambda k: (len(entries[k].tradingsymbol),
                                                           entries[k].tradingsymbol))
    return SearchIndex(entries, tuple((i.tradingsymbol.upper(), i.name.upper()) for i in entries),
                       tuple(by_length))
