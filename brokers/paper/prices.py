"""Seeded price simulation: one multiplicative random walk per instrument.

`step()` moves every instrument once, in master order, drawing from one `random.Random(seed)`,
so the sequence of prices is the same for the same seed and the same instrument master.
Watchers (`watch`) hear of every move, a step moving every instrument (the ticker's market data).
Prices stay on the instrument's tick and never go below one tick. An instrument whose master
price is 0 (common in Kite CSV dumps) starts at 100.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection

from .instruments import Instrument, InstrumentMaster

_VOLATILITY = 0.001  # per step, log-normal
_DEFAULT_START = 100.0

Watcher = Callable[[Collection[Instrument]], None]


def on_tick(price: float, tick: float) -> float:
    tick = tick or 0.05
    return max(round(round(price / tick) * tick, 2), tick)


class PriceBook:
    def __init__(self, master: InstrumentMaster, seed: int) -> None:
        self._master = master
        self._seed = seed
        self._rng = random.Random(seed)
        self._ltp: dict[str, float] = {}
        self._close: dict[str, float] = {}
        self._watchers: list[Watcher] = []
        self.reset()

    def watch(self, watcher: Watcher) -> None:
        """Call `watcher(instruments)` after every move, with the instruments that moved."""
        self._watchers.append(watcher)

    def _moved(self, instruments: Collection[Instrument]) -> None:
        for watcher in self._watchers:
            watcher(instruments)

    def reset(self) -> None:
        self._rng = random.Random(self._seed)
        self._close = {
            i.key: on_tick(i.last_price if i.last_price > 0 else _DEFAULT_START, i.tick_size)
            for i in self._master.instruments
        }
        self._ltp = dict(self._close)
        self._moved(self._master.instruments)

    def close(self, instrument: Instrument) -> float:
        """The starting price, shown as the previous close."""
        return self._close[instrument.key]

    def ltp(self, instrument: Instrument) -> float:
        return self._ltp[instrument.key]

    def set(self, instrument: Instrument, price: float) -> None:
        self._ltp[instrument.key] = on_tick(price, instrument.tick_size)
        self._moved((instrument,))

    def step(self) -> None:
        for i in self._master.instruments:
            move = math.exp(self._rng.gauss(0.0, _VOLATILITY))
            self._ltp[i.key] = on_tick(self._ltp[i.key] * move, i.tick_size)
        self._moved(self._master.instruments)
