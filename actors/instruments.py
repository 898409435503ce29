"""A gateway-side cache of the broker's instrument master, per exchange, refreshed daily.

Validation must answer "known instrument? lot? tick? freeze?" for every leg before anything is
sent, without one `GET /instruments` per request. Kite's dump carries no freeze quantity, so
freeze limits come from configuration, keyed by the underlying's name (NIFTY, BANKNIFTY).

Lot and freeze sizes change overnight, and Kite publishes the day's dump early in the morning:
a master loaded before the day's refresh instant (08:30 IST by default) is stale from then on,
and the first validation after it loads the new one (one GET per exchange, one loader at a
time), so no order after 08:30 is checked against yesterday's lots.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import trio

from brokers.base import Broker, Instrument

from .calendar import DEFAULT_INSTRUMENT_REFRESH, IST, last_refresh
from .instrument_search import SearchIndex, build_index

#: NSE's published freeze quantities (units) for the index derivatives the desk trades.
DEFAULT_FREEZE_LIMITS: Mapping[str, int] = {"NIFTY": 1800, "BANKNIFTY": 600}


@attrs.frozen
class InstrumentInfo:
    """What validation needs of one instrument."""

    exchange: str
    tradingsymbol: str
    lot_size: int
    tick_size: float
    name: str = ""
    freeze_quantity: int | None = None
    last_price: float = 0.0
    instrument_type: str = ""  # EQ, FUT, CE, PE
    expiry: dt.date | None = None
    strike: float = 0.0
    instrument_token: int = 0


def wall_clock() -> dt.datetime:
    return dt.datetime.now(IST)


class InstrumentCache:
    """Loads an exchange's master on first use and again once the day's refresh instant
    (`refresh_at`, IST) has passed since it was loaded; one loader at a time. `clock` gives
    the wall-clock time (tests drive it from the Trio clock)."""

    def __init__(
        self,
        broker: Broker,
        freeze_limits: Mapping[str, int] = DEFAULT_FREEZE_LIMITS,
        refresh_at: dt.time = DEFAULT_INSTRUMENT_REFRESH,
        clock: Callable[[], dt.datetime] = wall_clock,
    ) -> None:
        self._broker = broker
        self._freeze = dict(freeze_limits)
        self._refresh_at = refresh_at
        self._clock = clock
        self._by_exchange: dict[str, tuple[dt.datetime, dict[str, InstrumentInfo]]] = {}
        self._lock = trio.Lock()
        self.version = 0  # one more at each load of an exchange's master

    async def load(self, exchanges: Iterable[str]) -> None:
        """Make sure the masters of `exchanges` are fresh (BrokerError if the broker fails)."""
        async with self._lock:
            for exchange in sorted(set(exchanges)):
                loaded = self._by_exchange.get(exchange)
                now = self._clock()
                if loaded is not None and loaded[0] >= last_refresh(now, self._refresh_at):
                    continue
                rows = await self._broker.instruments(exchange)
                self._by_exchange[exchange] = (
                    now,
                    {r.tradingsymbol: self._info(r) for r in rows if r.exchange == exchange},
                )
                self.version += 1

    def get(self, exchange: str, tradingsymbol: str) -> InstrumentInfo | None:
        """A loaded instrument, or None (unknown, or its exchange was never loaded)."""
        loaded = self._by_exchange.get(exchange)
        return None if loaded is None else loaded[1].get(tradingsymbol)

    def loaded(self, exchange: str) -> list[InstrumentInfo]:
        """Every loaded instrument of `exchange` (none before its first load)."""
        loaded = self._by_exchange.get(exchange)
        return list(loaded[1].values()) if loaded else []

    def contracts(self, exchange: str, name: str, instrument_type: str) -> list[InstrumentInfo]:
        """The loaded contracts of one underlying and type (FUT, CE, PE), by expiry and strike:
        what an error about an expired contract names instead."""
        loaded = self._by_exchange.get(exchange)
        found = [i for i in (loaded[1].values() if loaded else ())
                 if i.name == name and i.instrument_type == instrument_type]
        return sorted(found, key=lambda i: (i.expiry or dt.date.min, i.strike))

    def _info(self, row: Instrument) -> InstrumentInfo:
        return InstrumentInfo(
            exchange=row.exchange,
            tradingsymbol=row.tradingsymbol,
            lot_size=max(1, row.lot_size),
            tick_size=row.tick_size or 0.05,
            name=row.name,
            freeze_quantity=self._freeze.get(row.name) if row.segment != row.exchange else None,
            last_price=row.last_price,
            instrument_type=row.instrument_type,
            expiry=_date(row.expiry),
            strike=row.strike,
            instrument_token=row.instrument_token,
        )


class InstrumentCaches:
    """One `InstrumentCache` per broker URL: the accounts on one venue (or on Kite) share one
    master instead of loading it once each. The service makes one and hands it to both the order
    path (validation) and the page (`GET /instruments`)."""

    def __init__(self, freeze_limits: Mapping[str, int] = DEFAULT_FREEZE_LIMITS,
                 refresh_at: dt.time = DEFAULT_INSTRUMENT_REFRESH) -> None:
        self._freeze, self._refresh_at = freeze_limits, refresh_at
        self._by_url: dict[str, InstrumentCache] = {}
        self._indexes: dict[tuple[tuple[int, int], ...], SearchIndex] = {}

    def for_broker(self, broker: Broker) -> InstrumentCache:
        """The cache of `broker`'s URL, made on first use with the broker that asked."""
        url = broker_url(broker)
        if url not in self._by_url:
            self._by_url[url] = InstrumentCache(broker, self._freeze, self._refresh_at)
        return self._by_url[url]


    def search_index(
        self, caches: Sequence[InstrumentCache], exchanges: Sequence[str]
    ) -> SearchIndex:
        """The search index over `caches` (in this order) for `exchanges`: built once per
        load of their masters, then shared by every search until one of them reloads."""
        unique = list(dict.fromkeys(caches))
        key = tuple((id(cache), cache.version) for cache in unique)
        index = self._indexes.get(key)
        if index is None:
            if len(self._indexes) >= MAX_INDEXES:  # stale versions, other account subsets
                self._indexes.clear()
            index = self._indexes[key] = build_index(
                cache.loaded(exchange) for cache in unique for exchange in exchanges)
        return index


#: Search indexes kept (one per set of brokers searched together, at their current masters).
MAX_INDEXES = 16


def broker_url(broker: Any) -> str:
    """What the caches are keyed by: the broker's REST URL (a broker without one, such as a
    test double, has a cache of its own)."""
    url = getattr(getattr(broker, "settings", None), "rest_url", None)
    return str(url) if url else f"broker:{id(broker)}"


def _date(text: str) -> dt.date | None:
    """A master's expiry (`2025-11-25`; empty for equities)."""
    try:
        return dt.date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None
