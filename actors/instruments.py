"""A gateway-side cache of the broker's instrument master, per exchange, refreshed daily.

Validation must answer "known instrument? lot? tick? freeze?" for every leg before anything is
sent, without one `GET /instruments` per request. Kite's dump carries no freeze quantity, so
freeze limits come from configuration, keyed by the underlying's name (NIFTY, BANKNIFTY).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs
import trio

from brokers.base import Broker, Instrument

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


class InstrumentCache:
    """Loads an exchange's master on first use and again after `max_age_s`; one loader at a time."""

    def __init__(
        self,
        broker: Broker,
        freeze_limits: Mapping[str, int] = DEFAULT_FREEZE_LIMITS,
        max_age_s: float = 6 * 3600.0,
    ) -> None:
        self._broker = broker
        self._freeze = dict(freeze_limits)
        self._max_age_s = max_age_s
        self._by_exchange: dict[str, tuple[float, dict[str, InstrumentInfo]]] = {}
        self._lock = trio.Lock()

    async def load(self, exchanges: Iterable[str]) -> None:
        """Make sure the masters of `exchanges` are fresh (BrokerError if the broker fails)."""
        async with self._lock:
            for exchange in sorted(set(exchanges)):
                loaded = self._by_exchange.get(exchange)
                if loaded is not None and trio.current_time() - loaded[0] < self._max_age_s:
                    continue
                rows = await self._broker.instruments(exchange)
                self._by_exchange[exchange] = (
                    trio.current_time(),
                    {r.tradingsymbol: self._info(r) for r in rows if r.exchange == exchange},
                )

    def get(self, exchange: str, tradingsymbol: str) -> InstrumentInfo | None:
        """A loaded instrument, or None (unknown, or its exchange was never loaded)."""
        loaded = self._by_exchange.get(exchange)
        return None if loaded is None else loaded[1].get(tradingsymbol)

    def _info(self, row: Instrument) -> InstrumentInfo:
        return InstrumentInfo(
            exchange=row.exchange,
            tradingsymbol=row.tradingsymbol,
            lot_size=max(1, row.lot_size),
            tick_size=row.tick_size or 0.05,
            name=row.name,
            freeze_quantity=self._freeze.get(row.name) if row.segment != row.exchange else None,
            last_price=row.last_price,
        )
